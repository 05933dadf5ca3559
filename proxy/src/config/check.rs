//! `health_check = { ... }` of an upstream: defaults, ranges and the `expect` status list.

use toml::Spanned;

use super::build::Ctx;
use super::raw::RawHealthCheck;
use super::{defaults, Expect, HealthCheck};

/// Validates one `health_check` table (every bad key reported, defaults for the rest).
pub(super) fn health_check(
    cx: &mut Ctx<'_>,
    raw: &Spanned<RawHealthCheck>,
    what: &str,
) -> HealthCheck {
    let raw = raw.get_ref();
    let what = format!("{what}: health_check");
    let uri = match &raw.uri {
        None => defaults::CHECK_URI.to_string(),
        Some(u) if valid_uri(u.get_ref()) => u.get_ref().clone(),
        Some(u) => {
            cx.error_at(
                u,
                format!("{what}: uri \"{}\" must start with \"/\" and hold no spaces or control characters", u.get_ref()),
            );
            defaults::CHECK_URI.to_string()
        }
    };
    let interval = cx.duration(
        &raw.interval,
        defaults::CHECK_INTERVAL,
        &format!("{what}: interval"),
        true,
    );
    let timeout = cx.duration(
        &raw.timeout,
        defaults::CHECK_TIMEOUT,
        &format!("{what}: timeout"),
        true,
    );
    let fall = cx.int(
        &raw.fall,
        i64::from(defaults::CHECK_FALL),
        1,
        1000,
        &format!("{what}: fall"),
    );
    let rise = cx.int(
        &raw.rise,
        i64::from(defaults::CHECK_RISE),
        1,
        1000,
        &format!("{what}: rise"),
    );
    let expect = match &raw.expect {
        None => parse_expect(defaults::CHECK_EXPECT).unwrap_or(Expect(vec![(200, 399)])),
        Some(e) => parse_expect(e.get_ref()).unwrap_or_else(|msg| {
            cx.error_at(e, format!("{what}: expect: {msg}"));
            Expect(vec![(200, 399)])
        }),
    };
    HealthCheck {
        uri,
        interval,
        timeout,
        fall: u32::try_from(fall).unwrap_or(defaults::CHECK_FALL),
        rise: u32::try_from(rise).unwrap_or(defaults::CHECK_RISE),
        expect,
    }
}

fn valid_uri(uri: &str) -> bool {
    uri.starts_with('/') && !uri.bytes().any(|b| b <= b' ' || b == 0x7f)
}

/// "2xx|3xx", "200", "200-299", "204|301-302": status classes, codes and ranges within
/// 100..=599, joined by `|`.
pub fn parse_expect(text: &str) -> Result<Expect, String> {
    let mut ranges = Vec::new();
    for part in text.split('|').map(str::trim) {
        let range = if let Some(class) = part.strip_suffix("xx").or(part.strip_suffix("XX")) {
            match class.parse::<u16>() {
                Ok(c) if (1..=5).contains(&c) && class.len() == 1 => (c * 100, c * 100 + 99),
                _ => return Err(format!("\"{part}\" is not a status class like 2xx")),
            }
        } else if let Some((lo, hi)) = part.split_once('-') {
            match (status(lo), status(hi)) {
                (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
                _ => return Err(format!("\"{part}\" is not a status range like 200-399")),
            }
        } else {
            match status(part) {
                Some(s) => (s, s),
                None => {
                    return Err(format!(
                        "\"{part}\" is not a status (use e.g. \"2xx|3xx\", \"200\" or \"200-399\")"
                    ))
                }
            }
        };
        ranges.push(range);
    }
    Ok(Expect(ranges))
}

fn status(s: &str) -> Option<u16> {
    s.trim()
        .parse::<u16>()
        .ok()
        .filter(|c| (100..=599).contains(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expect_forms() {
        let e = parse_expect("2xx|3xx").unwrap();
        assert!(e.matches(200) && e.matches(399) && !e.matches(400) && !e.matches(199));
        assert_eq!(e.to_string(), "2xx|3xx");
        let e = parse_expect("204|301-302").unwrap();
        assert_eq!(e.to_string(), "204|301-302");
        assert!(e.matches(204) && e.matches(302) && !e.matches(200) && !e.matches(303));
        for bad in ["", "6xx", "2x", "abc", "300-200", "99", "200-", "22xx"] {
            assert!(parse_expect(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
