//! nginx-style durations ("500ms", "2s", "1m", "1h 30m") and sizes ("64k", "1m", "1g").

use std::time::Duration;

/// Parses an nginx time value: one or more `<integer><unit>` parts, units `ms`, `s`, `m`
/// (minutes), `h`, `d`, `w`, `M` (30 days), `y` (365 days), largest first and each at most once
/// (nginx's rule), optionally separated by spaces; a bare integer alone means seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let text = s.trim();
    if text.is_empty() {
        return Err("empty duration".to_string());
    }
    if text.bytes().all(|b| b.is_ascii_digit()) {
        let secs: u64 = text
            .parse()
            .map_err(|_| format!("duration \"{s}\" is too large"))?;
        return secs
            .checked_mul(1000)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("duration \"{s}\" is too large"));
    }

    // Unit table, largest first; the index doubles as nginx's "step" that must strictly grow.
    const UNITS: [(&str, u64); 8] = [
        ("y", 365 * 86_400_000),
        ("M", 30 * 86_400_000),
        ("w", 7 * 86_400_000),
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("ms", 1),
        ("m", 60_000),
        ("s", 1000),
    ];
    // Order rank of each unit (ms is the smallest even though it is matched before "m").
    fn rank(unit: &str) -> u8 {
        match unit {
            "y" => 0,
            "M" => 1,
            "w" => 2,
            "d" => 3,
            "h" => 4,
            "m" => 5,
            "s" => 6,
            _ => 7, // ms
        }
    }

    let mut rest = text;
    let mut total: u64 = 0;
    let mut last_rank: Option<u8> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration \"{s}\": expected a number like \"500ms\", \"10s\", \"1m\" or \"1h 30m\""
            ));
        }
        let (num, after) = rest.split_at(digits);
        let value: u64 = num
            .parse()
            .map_err(|_| format!("duration \"{s}\" is too large"))?;
        let Some(&(unit, millis)) = UNITS.iter().find(|(u, _)| after.starts_with(u)) else {
            let bad: String = after.chars().take_while(|c| !c.is_whitespace()).collect();
            if bad.is_empty() {
                return Err(format!(
                    "invalid duration \"{s}\": a number without unit is only allowed alone (seconds)"
                ));
            }
            return Err(format!(
                "invalid duration \"{s}\": unknown unit \"{bad}\" (use ms, s, m, h, d, w, M, y)"
            ));
        };
        let r = rank(unit);
        if last_rank.is_some_and(|last| r <= last) {
            return Err(format!(
                "invalid duration \"{s}\": units must go from largest to smallest, each once"
            ));
        }
        last_rank = Some(r);
        total = value
            .checked_mul(millis)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration \"{s}\" is too large"))?;
        rest = after[unit.len()..].trim_start();
    }
    Ok(Duration::from_millis(total))
}

/// Parses an nginx size: an integer with an optional `k`/`K` (KiB), `m`/`M` (MiB) or `g`/`G`
/// (GiB) suffix; a bare integer is bytes.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let text = s.trim();
    let (num, mult) = match text.as_bytes().last() {
        None => return Err("empty size".to_string()),
        Some(b'k' | b'K') => (&text[..text.len() - 1], 1u64 << 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 1u64 << 20),
        Some(b'g' | b'G') => (&text[..text.len() - 1], 1u64 << 30),
        Some(_) => (text, 1),
    };
    if num.is_empty() || !num.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "invalid size \"{s}\": expected a number with an optional k, m or g suffix, like \"64k\" or \"1m\""
        ));
    }
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(|| format!("size \"{s}\" is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        let ok: &[(&str, u64)] = &[
            ("500ms", 500),
            ("0", 0),
            ("0s", 0),
            ("2s", 2000),
            ("60", 60_000),
            ("1m", 60_000),
            ("1h", 3_600_000),
            ("1d", 86_400_000),
            ("1w", 7 * 86_400_000),
            ("1M", 30 * 86_400_000),
            ("1y", 365 * 86_400_000),
            ("1m30s", 90_000),
            ("1h 30m", 5_400_000),
            ("1s 500ms", 1500),
            (" 10s ", 10_000),
        ];
        for &(input, millis) in ok {
            assert_eq!(
                parse_duration(input),
                Ok(Duration::from_millis(millis)),
                "{input}"
            );
        }
        let bad = [
            "",
            "s",
            "10x",
            "10 s",
            "-1s",
            "1.5s",
            "10sec",
            "1m1h",
            "1s1s",
            "1m 30",
            "ms",
            "10S",
            "1s 2",
            "+5s",
            "99999999999999999999",
            "18446744073709551615",
            "18446744073709551615ms5",
            "9999999999999999y",
        ];
        for input in bad {
            assert!(parse_duration(input).is_err(), "{input:?} should fail");
        }
    }

    #[test]
    fn sizes() {
        let ok: &[(&str, u64)] = &[
            ("0", 0),
            ("100", 100),
            ("64k", 65_536),
            ("64K", 65_536),
            ("1m", 1 << 20),
            ("1M", 1 << 20),
            ("1g", 1 << 30),
            ("8k", 8192),
        ];
        for &(input, bytes) in ok {
            assert_eq!(parse_size(input), Ok(bytes), "{input}");
        }
        let bad = [
            "",
            "k",
            "1kb",
            "1t",
            "-1",
            "1.5m",
            "1 m",
            "18446744073709551616",
            "17179869184g",
        ];
        for input in bad {
            assert!(parse_size(input).is_err(), "{input:?} should fail");
        }
    }
}
