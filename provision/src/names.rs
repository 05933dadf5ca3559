//! What the inventory accepts as names that end up in remote commands and configuration files:
//! strict enough that no value carries shell or file syntax, whatever quoting does later.

/// A host name label: 1-63 of a-z, 0-9 and `-`, not starting with `-`.
pub fn valid_hostname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Why `name` cannot be a network interface name: the kernel's own rule (`dev_valid_name`:
/// 1 to 15 bytes, not `.` or `..`, no `/`, `:` or whitespace), and, stricter, nothing but
/// letters, digits, `-`, `_` and `.`: the name goes into root shells and into files sourced
/// as shell (ifcfg) or without any quoting (ifupdown's interfaces), so shell syntax is
/// refused outright rather than trusted to quoting alone.
pub fn ifname_problem(name: &str) -> Option<String> {
    const IFNAMSIZ: usize = 16;
    if name.is_empty() || name.len() >= IFNAMSIZ {
        return Some(format!("must be 1-{} bytes", IFNAMSIZ - 1));
    }
    if name == "." || name == ".." {
        return Some("cannot be \".\" or \"..\"".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| *c == '/' || *c == ':' || c.is_whitespace())
    {
        return Some(format!("contains {c:?}, which the kernel refuses"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Some(format!(
            "contains {c:?}: only letters, digits, '-', '_' and '.' are accepted (shell syntax is refused)"
        ));
    }
    None
}

/// A time zone name as under /usr/share/zoneinfo ("Asia/Shanghai"): no absolute path, no
/// `..`, nothing a shell or a path would read specially.
pub fn valid_timezone(tz: &str) -> bool {
    !tz.is_empty()
        && tz.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+'))
        })
}

/// A time server for chrony.conf's `server NAME iburst`: a host name or an address, one word.
pub fn valid_time_server(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && !s.starts_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':'))
}

/// A repository base URL for a yum .repo file: http(s) or file, one line, no spaces.
pub fn valid_baseurl(u: &str) -> bool {
    ["http://", "https://", "file://"]
        .iter()
        .any(|p| u.starts_with(p))
        && u.bytes().all(|b| b.is_ascii_graphic())
}
