//! Micro-benches of the HTTP hot path: request-head parsing, the upstream head rewrite, and the
//! chunked-body scanner. `cargo bench -p proxy --bench head_parser`.

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use proxy::http::{parse_request, write_upstream_head, ChunkedDecoder, HeaderSpan, Limits};

/// What a desktop browser sends for a page (13 fields, ~700 bytes).
const BROWSER: &[u8] = b"GET /articles/2024/load-balancing-with-io-uring?ref=home&utm_source=feed HTTP/1.1\r\n\
Host: www.example.com\r\n\
Connection: keep-alive\r\n\
Cache-Control: max-age=0\r\n\
sec-ch-ua: \"Chromium\";v=\"124\", \"Google Chrome\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\n\
sec-ch-ua-mobile: ?0\r\n\
sec-ch-ua-platform: \"Linux\"\r\n\
Upgrade-Insecure-Requests: 1\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36\r\n\
Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,image/apng,*/*;q=0.8\r\n\
Sec-Fetch-Site: same-origin\r\n\
Sec-Fetch-Mode: navigate\r\n\
Accept-Encoding: gzip, deflate, br, zstd\r\n\
Accept-Language: en-GB,en;q=0.9,de;q=0.8\r\n\
Cookie: session=6f1c2a9e0b7d4e3f8a5c1d2e3f4a5b6c; theme=dark; consent=1\r\n\r\n";

const CURL: &[u8] =
    b"GET / HTTP/1.1\r\nHost: 172.16.249.80\r\nUser-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";

/// A 64 KiB body in 16 chunks of 4 KiB, as an upstream streaming a response would send it.
fn chunked_body() -> Vec<u8> {
    let mut b = Vec::with_capacity(70 * 1024);
    for _ in 0..16 {
        b.extend_from_slice(b"1000\r\n");
        b.resize(b.len() + 4096, b'x');
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"0\r\n\r\n");
    b
}

fn parse(c: &mut Criterion) {
    let limits = Limits::default();
    let mut g = c.benchmark_group("parse_request");
    for (name, req) in [("browser", BROWSER), ("curl", CURL)] {
        g.throughput(Throughput::Bytes(req.len() as u64));
        let mut headers: Vec<HeaderSpan> = Vec::with_capacity(32);
        g.bench_function(name, |b| {
            b.iter(|| {
                let head = parse_request(black_box(req), &limits, &mut headers);
                black_box(head.is_ok_and(|h| h.is_some()))
            })
        });
    }
    g.finish();
}

fn rewrite(c: &mut Criterion) {
    let limits = Limits::default();
    let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let mut g = c.benchmark_group("write_upstream_head");
    for (name, req) in [("browser", BROWSER), ("curl", CURL)] {
        let mut headers: Vec<HeaderSpan> = Vec::with_capacity(32);
        let Ok(Some(head)) = parse_request(req, &limits, &mut headers) else {
            panic!("{name}: the bench request must parse");
        };
        let mut out = Vec::with_capacity(2048);
        g.throughput(Throughput::Bytes(req.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                out.clear();
                write_upstream_head(
                    black_box(req),
                    &head,
                    &headers,
                    client,
                    "backend",
                    None,
                    &mut out,
                );
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn chunked(c: &mut Criterion) {
    let body = chunked_body();
    let mut g = c.benchmark_group("chunked_decoder");
    g.throughput(Throughput::Bytes(body.len() as u64));
    g.bench_function("64KiB_4KiB_chunks", |b| {
        b.iter(|| {
            let mut d = ChunkedDecoder::new();
            let mut input = black_box(body.as_slice());
            let mut data = 0usize;
            while let Ok(step) = d.decode(input) {
                data += step.data.len();
                input = input.get(step.consumed..).unwrap_or_default();
                if step.done || step.consumed == 0 {
                    break;
                }
            }
            assert_eq!(data, 64 * 1024);
            data
        })
    });
    g.finish();
}

criterion_group!(benches, parse, rewrite, chunked);
criterion_main!(benches);
