//! Quoting and escaping of values interpolated into remote shell command lines and into the
//! configuration files provision writes, one function per format. The inventory validates
//! names strictly as well; these make each format safe whatever reaches it.

use std::fmt::Write as _;

/// Single-quotes `s` for a POSIX shell: the result is one word whatever `s` holds.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Characters that need no quoting in any of the formats below.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b':'))
}

/// A value of an ifcfg file (`KEY=value`): the network scripts `source` these files, so a
/// value is shell syntax; anything but plain characters is single-quoted.
pub fn ifcfg_value(s: &str) -> String {
    if plain(s) {
        s.to_string()
    } else {
        shell_quote(s)
    }
}

/// A value of a NetworkManager keyfile (GLib key file): backslash escapes for `\`, line
/// breaks, tabs and a leading space.
pub fn keyfile_value(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, c) in s.chars().enumerate() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            ' ' if i == 0 => out.push_str("\\s"),
            c => out.push(c),
        }
    }
    out
}

/// A YAML scalar (netplan): plain when it cannot be read as anything else, otherwise a
/// double-quoted string with escapes.
pub fn yaml_scalar(s: &str) -> String {
    let looks_typed = s.parse::<f64>().is_ok()
        || matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "yes" | "no" | "on" | "off" | "null" | "~" | "y" | "n"
        );
    let first_ok = s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if plain(s) && first_ok && !looks_typed && !s.contains(':') {
        return s.to_string();
    }
    double_quoted(s)
}

/// A TOML basic string, quotes included.
pub fn toml_string(s: &str) -> String {
    double_quoted(s)
}

/// `"..."` with `"` and `\` escaped and control characters as `\uXXXX` (valid in both TOML
/// basic strings and YAML double-quoted scalars).
fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` as a literal inside a POSIX extended regular expression.
pub fn ere_literal(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if "\\.[]()*+?{}|^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOSTILE: &str = "a'b\"c $(id) `x` \\ ; \n# x: [y]";

    #[test]
    fn single_quotes_survive() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("printf %s {}", shell_quote(HOSTILE))])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), HOSTILE);
    }

    #[test]
    fn ifcfg_values_read_back_by_a_shell() {
        assert_eq!(ifcfg_value("ens33"), "ens33");
        let file = format!("NAME={}\n", ifcfg_value(HOSTILE));
        let out = std::process::Command::new("sh")
            .args(["-c", &format!("{file}printf %s \"$NAME\"")])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), HOSTILE);
    }

    #[test]
    fn keyfile_escapes() {
        assert_eq!(keyfile_value("ens33"), "ens33");
        assert_eq!(keyfile_value(" a\\b\nc"), "\\sa\\\\b\\nc");
    }

    #[test]
    fn yaml_and_toml_read_back() {
        assert_eq!(yaml_scalar("ens33"), "ens33");
        for v in ["yes", "1e3", "a:b", "-x"] {
            assert!(yaml_scalar(v).starts_with('"'), "{v}");
        }
        let doc = format!("k = {}\n", toml_string(HOSTILE));
        let t: toml::Table = doc.parse().unwrap();
        assert_eq!(t["k"].as_str(), Some(HOSTILE));
        assert_eq!(toml_string("a\"b\\c"), "\"a\\\"b\\\\c\"");
    }

    #[test]
    fn ere_literal_matches_itself_only() {
        let re = ere_literal("eth0.1");
        assert_eq!(re, "eth0\\.1");
        let out = std::process::Command::new("sh")
            .args([
                "-c",
                &format!(
                    "printf 'eth0x1\\neth0.1\\n' | grep -Ec -e {}",
                    shell_quote(&re)
                ),
            ])
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "1\n");
    }
}
