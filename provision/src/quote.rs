//! Quoting of values interpolated into remote shell command lines.

/// Single-quotes `s` for a POSIX shell: the result is one word whatever `s` holds.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_quotes_survive() {
        assert_eq!(shell_quote("a'b"), "'a'\\''b'");
    }
}
