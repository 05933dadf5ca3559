//! parse_request -> write_upstream_head -> body framing (Content-Length / chunked) on arbitrary
//! input. Byte 0 picks the limits, byte 1 where the body is split into two reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::http::{parse_request, write_upstream_head, BodyKind, Limits, RequestError, Version};

mod common;

fn in_head(r: &std::ops::Range<usize>, head_len: usize) -> bool {
    r.start <= r.end && r.end <= head_len
}

fuzz_target!(|data: &[u8]| {
    let [ctl, cut, input @ ..] = data else { return };
    let limits = if ctl & 1 == 0 {
        Limits::default()
    } else {
        Limits {
            max_head: usize::from(ctl >> 1) * 8,
            max_headers: usize::from(ctl >> 4),
        }
    };
    let mut headers = Vec::new();
    let head = match parse_request(input, &limits, &mut headers) {
        Ok(Some(head)) => head,
        Ok(None) => {
            assert!(
                input.len() < limits.max_head,
                "incomplete head over the limit"
            );
            return;
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 431 | 501));
            if e == RequestError::HeadTooLarge {
                assert!(input.len() >= limits.max_head || headers.is_empty());
            }
            return;
        }
    };
    let hl = head.head_len;
    assert!(hl <= input.len() && hl <= limits.max_head);
    assert!(headers.len() <= limits.max_headers);
    assert!(in_head(&head.method_span, hl) && in_head(&head.target, hl));
    assert!(in_head(&head.request_line, hl));
    assert!(head.host.as_ref().is_none_or(|h| in_head(h, hl)));
    assert!(headers
        .iter()
        .all(|h| in_head(&h.name, hl) && in_head(&h.value, hl)));
    if head.version == Version::Http11 {
        assert!(head.host.is_some());
    }

    // The rewritten head must parse back with the same framing (no header injection, no
    // framing change), and `out` is only appended to.
    let mut out = b"prefix".to_vec();
    let client = if ctl & 2 == 0 {
        "192.0.2.7".parse().unwrap()
    } else {
        "2001:db8::7".parse().unwrap()
    };
    write_upstream_head(input, &head, &headers, client, "default", None, &mut out);
    assert!(out.starts_with(b"prefix"));
    let big = Limits {
        max_head: 1 << 20,
        max_headers: 512,
    };
    let mut headers2 = Vec::new();
    let up = &out[6..];
    match parse_request(up, &big, &mut headers2) {
        Ok(Some(h2)) => {
            assert_eq!(h2.head_len, up.len(), "rewritten head has trailing bytes");
            assert_eq!(h2.body, head.body, "rewriting changed the body framing");
            assert_eq!(h2.method, head.method);
            assert_eq!(h2.version, Version::Http11);
            assert!(h2.keep_alive);
            assert!(!h2.expect_continue);
        }
        other => panic!("rewritten head does not parse: {other:?}"),
    }
    // De-chunked variant: CL replaces the framing.
    out.clear();
    write_upstream_head(input, &head, &headers, client, "default", Some(7), &mut out);
    match parse_request(&out, &big, &mut headers2) {
        Ok(Some(h2)) => assert_eq!(h2.body, BodyKind::Length(7)),
        other => panic!("rewritten head (CL) does not parse: {other:?}"),
    }

    let rest = &input[hl..];
    match head.body {
        BodyKind::Chunked => common::check_chunked(rest, common::cut_at(rest.len(), *cut)),
        BodyKind::Length(n) => {
            // Content-Length framing: the body is the first n bytes, however it arrives.
            let first = common::cut_at(rest.len(), *cut);
            let got = (first as u64).min(n)
                + ((rest.len() - first) as u64).min(n - (first as u64).min(n));
            assert_eq!(got, (rest.len() as u64).min(n));
        }
        BodyKind::Empty => {}
        BodyKind::CloseDelimited => panic!("request bodies are never close-delimited"),
    }
});
