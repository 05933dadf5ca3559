//! Collects every shape error (unknown key, wrong type), not only serde's first one.
//!
//! serde stops at the first error. So after each error we blank out (with spaces, keeping every
//! byte offset and newline) the whole `key = value` it lies in, found with toml_edit's spans,
//! and parse again. Offsets stay valid, so later errors and the final spans point into the
//! original text. Syntax errors cannot be skipped this way: we stop at the first one.

use std::ops::Range;

use toml_edit::{ImDocument, Item, Table, Value};

use super::raw::RawFile;

/// At most this many shape errors are reported (each costs a reparse).
const MAX_ERRORS: usize = 50;

/// The raw file (if the blanked text finally parsed) and the errors met on the way.
pub(super) fn parse_raw(text: &str) -> (Option<RawFile>, Vec<(Range<usize>, String)>) {
    let mut work = text.to_string();
    let mut errors = Vec::new();
    while errors.len() < MAX_ERRORS {
        match toml::from_str::<RawFile>(&work) {
            Ok(raw) => return (Some(raw), errors),
            Err(e) => {
                let span = e.span();
                errors.push((span.clone().unwrap_or(0..0), e.message().trim().to_string()));
                let Some(span) = span else {
                    break;
                };
                let Ok(doc) = ImDocument::parse(work.as_str()) else {
                    break; // a syntax error: nothing after it can be trusted
                };
                let Some(kv) = enclosing_kv(doc.as_table(), span.start) else {
                    break;
                };
                if !blank(&mut work, kv) {
                    break;
                }
            }
        }
    }
    (None, errors)
}

/// Replaces `range` with spaces, keeping newlines (so line numbers do not move). False if
/// there was nothing to blank (so the caller cannot loop on the same error).
fn blank(work: &mut String, range: Range<usize>) -> bool {
    let Some(old) = work.get(range.clone()) else {
        return false; // not on char boundaries: cannot happen with toml spans, but never panic
    };
    if old.trim().is_empty() {
        return false;
    }
    // ASCII spaces for every byte of a character keep all later offsets unchanged.
    let blanked: String = old
        .chars()
        .flat_map(|c| match c {
            '\n' => std::iter::repeat_n('\n', 1),
            c => std::iter::repeat_n(' ', c.len_utf8()),
        })
        .collect();
    work.replace_range(range, &blanked);
    true
}

/// The span from key start to value end of the innermost `key = value` (in a standard table)
/// containing `offset`.
fn enclosing_kv(table: &Table, offset: usize) -> Option<Range<usize>> {
    for (k, item) in table.iter() {
        match item {
            Item::Table(t) => {
                if let Some(r) = enclosing_kv(t, offset) {
                    return Some(r);
                }
            }
            Item::ArrayOfTables(a) => {
                for t in a.iter() {
                    if let Some(r) = enclosing_kv(t, offset) {
                        return Some(r);
                    }
                }
            }
            Item::Value(v) => {
                let key = table.key(k).and_then(|k| k.span());
                if let (Some(key), Some(val)) = (key, value_span(v)) {
                    if key.start <= offset && offset < val.end.max(key.end) {
                        return Some(key.start..val.end.max(key.end));
                    }
                }
            }
            Item::None => {}
        }
    }
    None
}

fn value_span(v: &Value) -> Option<Range<usize>> {
    v.span()
}
