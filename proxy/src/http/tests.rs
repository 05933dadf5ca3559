//! Cross-cutting tests: the whole request framing (head, then CL or chunked body, then the next
//! pipelined request) must not depend on how the bytes were split into reads.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone, PartialEq)]
enum Event {
    Head {
        head: RequestHead,
        headers: Vec<HeaderSpan>,
        bytes: Vec<u8>,
    },
    Body(Vec<u8>),
    RequestError(RequestError),
    ChunkError(ChunkError),
    /// Input ran out: what was being read and how many bytes were left unconsumed.
    End(&'static str, usize),
}

enum Reading {
    Head,
    Length(u64, Vec<u8>),
    Chunked(ChunkedDecoder, Vec<u8>),
}

/// A client connection's read side: `pieces` arrive one after another into one buffer, heads are
/// re-parsed from the growing buffer, bodies framed by CL or the chunked decoder.
fn simulate(pieces: &[&[u8]], limits: &Limits) -> Vec<Event> {
    let mut events = Vec::new();
    let mut buf: Vec<u8> = Vec::new();
    let mut headers = Vec::new();
    let mut state = Reading::Head;
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match &mut state {
                Reading::Head => match parse_request(&buf, limits, &mut headers) {
                    Ok(None) => break,
                    Err(e) => {
                        events.push(Event::RequestError(e));
                        return events;
                    }
                    Ok(Some(head)) => {
                        events.push(Event::Head {
                            head: head.clone(),
                            headers: headers.clone(),
                            bytes: buf[..head.head_len].to_vec(),
                        });
                        buf.drain(..head.head_len);
                        state = match head.body {
                            BodyKind::Empty => Reading::Head,
                            BodyKind::Length(n) => Reading::Length(n, Vec::new()),
                            BodyKind::Chunked => {
                                Reading::Chunked(ChunkedDecoder::new(), Vec::new())
                            }
                            BodyKind::CloseDelimited => {
                                unreachable!("requests are never close-delimited")
                            }
                        };
                    }
                },
                Reading::Length(rem, acc) => {
                    let take = (*rem).min(buf.len() as u64) as usize;
                    if take == 0 {
                        break;
                    }
                    acc.extend(buf.drain(..take));
                    *rem -= take as u64;
                    if *rem == 0 {
                        events.push(Event::Body(std::mem::take(acc)));
                        state = Reading::Head;
                    }
                }
                Reading::Chunked(d, acc) => {
                    let step = match d.decode(&buf) {
                        Ok(s) => s,
                        Err(e) => {
                            // Data handed out before the error is part of the outcome too.
                            events.push(Event::Body(std::mem::take(acc)));
                            events.push(Event::ChunkError(e));
                            return events;
                        }
                    };
                    assert!(step.consumed <= buf.len());
                    assert!(step.data.start <= step.data.end && step.data.end <= step.consumed);
                    acc.extend_from_slice(&buf[step.data.clone()]);
                    buf.drain(..step.consumed);
                    if step.done {
                        events.push(Event::Body(std::mem::take(acc)));
                        state = Reading::Head;
                    } else if step.consumed == 0 {
                        assert!(buf.is_empty(), "no progress on non-empty input");
                        break;
                    }
                }
            }
        }
    }
    let what = match state {
        Reading::Head => "head",
        Reading::Length(..) => "length body",
        Reading::Chunked(..) => "chunked body",
    };
    events.push(Event::End(what, buf.len()));
    events
}

fn assert_split_invariant(input: &[u8], limits: &Limits) -> Vec<Event> {
    let whole = simulate(&[input], limits);
    for i in 0..=input.len() {
        let split = simulate(&[&input[..i], &input[i..]], limits);
        assert_eq!(
            split,
            whole,
            "split at {i} of {:?}",
            String::from_utf8_lossy(input)
        );
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(
        simulate(&bytes, limits),
        whole,
        "byte at a time: {:?}",
        String::from_utf8_lossy(input)
    );
    whole
}

fn bodies(events: &[Event]) -> Vec<Vec<u8>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Body(b) => Some(b.clone()),
            _ => None,
        })
        .collect()
}

fn heads(events: &[Event]) -> usize {
    events
        .iter()
        .filter(|e| matches!(e, Event::Head { .. }))
        .count()
}

const PIPELINED: &[u8] = b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n\
POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello\
POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n\
5;name=val;q=\"x\"\r\nworld\r\nA\r\n0123456789\r\n0;last\r\nX-Sum: 1\r\nX-B:\t2\r\n\r\n\
\r\nGET /d HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /partial HTTP/1.1\r\nHo";

#[test]
fn split_valid_pipelined() {
    let ev = assert_split_invariant(PIPELINED, &Limits::default());
    assert_eq!(heads(&ev), 4);
    assert_eq!(
        bodies(&ev),
        vec![b"hello".to_vec(), b"world0123456789".to_vec()]
    );
    assert_eq!(ev.last(), Some(&Event::End("head", 25)));
}

#[test]
fn split_valid_single_requests() {
    for req in [
        &b"GET / HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        b"GET http://h/x?y HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n",
        b"OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
        b"PUT /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
        b"POST /x HTTP/1.1\nHost: h\nContent-Length: 0\n\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\n",
        b"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\nabc",
    ] {
        let ev = assert_split_invariant(req, &Limits::default());
        assert!(heads(&ev) == 1, "{ev:?}");
    }
}

#[test]
fn split_invalid_requests() {
    let cases: [(&[u8], Event); 11] = [
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
            Event::RequestError(RequestError::Bad("both Content-Length and Transfer-Encoding")),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            Event::RequestError(RequestError::Bad("conflicting Content-Length")),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, gzip\r\n\r\n",
            Event::RequestError(RequestError::Bad("final transfer coding is not chunked")),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n b\r\n\r\n",
            Event::RequestError(RequestError::Bad("invalid header name")),
        ),
        (
            b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
            Event::RequestError(RequestError::Bad("invalid request line")),
        ),
        (
            b"GET / HTTP/1.1\r\n\r\n",
            Event::RequestError(RequestError::Bad("HTTP/1.1 request without Host")),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX",
            Event::ChunkError(ChunkError("chunk data not followed by CRLF")),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nz\r\n",
            Event::ChunkError(ChunkError("chunk size is not a hex number")),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n1 2\r\n",
            Event::ChunkError(ChunkError("invalid chunk size")),
        ),
        (
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nA b\r\n",
            Event::ChunkError(ChunkError("invalid trailer field name")),
        ),
        (
            b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\nHost: i\r\n\r\n",
            Event::RequestError(RequestError::Bad("more than one Host header")),
        ),
    ];
    for (input, want) in cases {
        let ev = assert_split_invariant(input, &Limits::default());
        assert_eq!(
            ev.last(),
            Some(&want),
            "{:?}",
            String::from_utf8_lossy(input)
        );
    }
    // Data before a chunk error is the same whichever way the input was split.
    let ev = simulate(
        &[&b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX"[..]],
        &Limits::default(),
    );
    assert_eq!(bodies(&ev), vec![b"hello".to_vec()]);
}

#[test]
fn split_with_small_limits() {
    let limits = Limits {
        max_head: 48,
        max_headers: 2,
    };
    let ev = assert_split_invariant(
        b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\n\r\n",
        &limits,
    );
    assert_eq!(
        ev.last(),
        Some(&Event::RequestError(RequestError::HeadTooLarge))
    );
    let ev = assert_split_invariant(
        b"GET /a-rather-long-path HTTP/1.1\r\nHost: example\r\n\r\n",
        &limits,
    );
    assert_eq!(
        ev.last(),
        Some(&Event::RequestError(RequestError::HeadTooLarge))
    );
    // The second pipelined request is the one over the limit.
    let ev = assert_split_invariant(
        b"GET / HTTP/1.1\r\nHost: h\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\nX-Long: 0123456789abc\r\n\r\n",
        &limits,
    );
    assert_eq!(heads(&ev), 1);
    assert_eq!(
        ev.last(),
        Some(&Event::RequestError(RequestError::HeadTooLarge))
    );
}

/// Encode `body` as chunks of the given sizes (cycled), with optional extensions and trailers.
fn encode_chunked(body: &[u8], sizes: &[usize], ext: bool, upper: bool, trailers: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = sizes[i % sizes.len()].min(rest.len());
        i += 1;
        if upper {
            out.extend_from_slice(format!("{n:X}").as_bytes());
        } else {
            out.extend_from_slice(format!("{n:x}").as_bytes());
        }
        if ext {
            out.extend_from_slice(b" ; ext=\"v;1\"");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&rest[..n]);
        out.extend_from_slice(b"\r\n");
        rest = &rest[n..];
    }
    out.extend_from_slice(if ext { &b"0;end\r\n"[..] } else { b"0\r\n" });
    if trailers {
        out.extend_from_slice(b"X-Checksum: abc\r\nX-Other:\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// Feed `input` to a decoder in pieces cut at `cuts`; returns (body, consumed, done).
fn decode_in_pieces(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, usize, bool), ChunkError> {
    let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
    cuts.push(input.len());
    cuts.sort_unstable();
    let mut d = ChunkedDecoder::new();
    let mut body = Vec::new();
    let mut pos = 0;
    for cut in cuts {
        // Only the bytes up to `cut` have "arrived".
        while pos < cut {
            let step = d.decode(&input[pos..cut])?;
            body.extend_from_slice(&input[pos..cut][step.data.clone()]);
            pos += step.consumed;
            if step.done {
                return Ok((body, pos, true));
            }
            if step.consumed == 0 {
                break;
            }
        }
    }
    Ok((body, pos, d.is_done()))
}

proptest! {
    #[test]
    fn chunked_round_trip(
        body in proptest::collection::vec(any::<u8>(), 0..3000),
        sizes in proptest::collection::vec(1usize..700, 1..8),
        ext: bool,
        upper: bool,
        trailers: bool,
        cuts in proptest::collection::vec(any::<usize>(), 0..8),
    ) {
        let mut input = encode_chunked(&body, &sizes, ext, upper, trailers);
        let encoded_len = input.len();
        input.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let (decoded, consumed, done) = decode_in_pieces(&input, &cuts).unwrap();
        prop_assert!(done);
        prop_assert_eq!(consumed, encoded_len);
        prop_assert_eq!(decoded, body);
    }

    #[test]
    fn chunked_request_body_split_anywhere(
        body in proptest::collection::vec(any::<u8>(), 0..600),
        sizes in proptest::collection::vec(1usize..200, 1..5),
        cut in any::<usize>(),
    ) {
        let mut input = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
        input.extend(encode_chunked(&body, &sizes, true, false, true));
        input.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: h\r\n\r\n");
        let cut = cut % (input.len() + 1);
        let whole = simulate(&[&input], &Limits::default());
        prop_assert_eq!(bodies(&whole), vec![body]);
        prop_assert_eq!(heads(&whole), 2);
        prop_assert_eq!(simulate(&[&input[..cut], &input[cut..]], &Limits::default()), whole);
    }

    /// Corrupt a valid pipelined stream in a few places: whatever the outcome (often an error),
    /// it must not depend on where the input was split, and nothing may panic.
    #[test]
    fn mutated_streams_split_invariant(
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cuts in proptest::collection::vec(any::<usize>(), 1..4),
        max_head in 16usize..200,
        max_headers in 0usize..6,
    ) {
        let mut input = PIPELINED.to_vec();
        for (at, byte) in edits {
            let at = at % input.len();
            input[at] = byte;
        }
        let limits = Limits { max_head, max_headers };
        let whole = simulate(&[&input], &limits);
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (input.len() + 1)).collect();
        cuts.push(0);
        cuts.push(input.len());
        cuts.sort_unstable();
        let pieces: Vec<&[u8]> = cuts.windows(2).map(|w| &input[w[0]..w[1]]).collect();
        prop_assert_eq!(simulate(&pieces, &limits), whole);
    }

    #[test]
    fn arbitrary_bytes_never_panic(input in proptest::collection::vec(any::<u8>(), 0..400)) {
        let mut headers = Vec::new();
        let limits = Limits { max_head: 128, max_headers: 4 };
        let _ = parse_request(&input, &limits, &mut headers);
        let _ = parse_response(&input, Method::Get, &mut headers);
        let _ = decode_in_pieces(&input, &[input.len() / 2]);
    }
}

/// Rough cost of the hot path. Ignored (timing, not correctness); run with
/// `cargo test --release -p proxy --lib http::tests::perf -- --ignored --nocapture`.
#[test]
#[ignore]
fn perf() {
    use std::time::Instant;
    let req = b"GET /index.html?x=1 HTTP/1.1\r\nHost: www.example.com\r\n\
        User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\r\n\
        Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n\
        Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate\r\n\
        Connection: keep-alive\r\nX-Forwarded-For: 203.0.113.9\r\nCookie: a=b; c=d\r\n\r\n";
    let mut headers = Vec::with_capacity(32);
    let mut out = Vec::with_capacity(4096);
    let client = "192.0.2.1".parse().unwrap();
    let n = 200_000;
    let t = Instant::now();
    for _ in 0..n {
        out.clear();
        let head = parse_request(std::hint::black_box(req), &Limits::default(), &mut headers)
            .unwrap()
            .unwrap();
        write_upstream_head(req, &head, &headers, client, "d", None, &mut out);
    }
    let per = t.elapsed().as_nanos() / n;
    println!(
        "parse_request+write_upstream_head ({} B head): {per} ns",
        req.len()
    );

    let body = vec![b'x'; 1 << 20];
    let enc = encode_chunked(&body, &[8192], false, false, false);
    let t = Instant::now();
    let rounds = 50;
    for _ in 0..rounds {
        let mut d = ChunkedDecoder::new();
        let mut pos = 0;
        while !d.is_done() {
            pos += d
                .decode(std::hint::black_box(&enc[pos..]))
                .unwrap()
                .consumed;
        }
    }
    let secs = t.elapsed().as_secs_f64();
    // Data bytes are skipped, not touched: this is the framing cost per chunk.
    println!(
        "chunked decode: {:.1} ns per 8 KiB chunk",
        secs * 1e9 / (rounds * body.len() / 8192) as f64
    );
}
