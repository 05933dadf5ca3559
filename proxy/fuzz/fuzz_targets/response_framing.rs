//! parse_response -> write_client_head -> chunked framing on arbitrary input. Byte 0 picks the
//! request method and client mode, byte 1 where the body is split into two reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proxy::http::{
    parse_response, write_client_head, BodyKind, ClientMode, Method, Version, RESPONSE_MAX_HEADERS,
};

mod common;

fuzz_target!(|data: &[u8]| {
    let [ctl, cut, input @ ..] = data else { return };
    let method = if ctl & 1 == 0 {
        Method::Get
    } else {
        Method::Head
    };
    let mut headers = Vec::new();
    let head = match parse_response(input, method, &mut headers) {
        Ok(Some(head)) => head,
        Ok(None) | Err(_) => return,
    };
    let hl = head.head_len;
    assert!(hl <= input.len());
    assert!(head.reason.end <= hl && head.reason.start <= head.reason.end);
    assert!(headers
        .iter()
        .all(|h| h.name.end <= hl && h.value.end <= hl));
    if head.body == BodyKind::CloseDelimited {
        assert!(!head.keep_alive);
    }
    if method == Method::Head || matches!(head.status, 100..=199 | 204 | 304) {
        assert_eq!(head.body, BodyKind::Empty);
    }

    let mode = ClientMode {
        version: if ctl & 2 == 0 {
            Version::Http11
        } else {
            Version::Http10
        },
        keep_alive: ctl & 4 == 0,
        dechunk: ctl & 8 != 0 && head.body == BodyKind::Chunked,
    };
    let mut out = Vec::new();
    write_client_head(input, &head, &headers, mode, &mut out);
    let mut headers2 = Vec::new();
    match parse_response(&out, method, &mut headers2) {
        Ok(Some(h2)) => {
            assert_eq!(h2.head_len, out.len(), "rewritten head has trailing bytes");
            assert_eq!(h2.status, head.status);
            assert_eq!(h2.version, Version::Http11);
            if !mode.dechunk {
                assert_eq!(h2.body, head.body, "rewriting changed the body framing");
            }
            assert_eq!(
                h2.keep_alive,
                mode.keep_alive && !mode.dechunk && h2.body != BodyKind::CloseDelimited
            );
        }
        // The added Connection field can take a 100-field head over the limit.
        Err(e) if e.0 == "too many headers" && headers.len() == RESPONSE_MAX_HEADERS => {}
        other => panic!("rewritten head does not parse: {other:?}"),
    }

    if head.body == BodyKind::Chunked {
        let rest = &input[hl..];
        common::check_chunked(rest, common::cut_at(rest.len(), *cut));
    }
});
