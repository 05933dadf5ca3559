//! Terminal output shared by the host threads: whole lines (or blocks) written under stdout's
//! lock, so output from hosts running in parallel never interleaves mid-line.

use std::io::Write as _;

/// Prints `text` prefixed with `[host]`, as one write.
pub fn line(host: &str, text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "[{host}] {text}");
    let _ = out.flush();
}

/// Prints `text` as is (stdout closed early is not an error worth a panic).
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
