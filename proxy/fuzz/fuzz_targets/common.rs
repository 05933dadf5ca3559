//! Invariant checks shared by the fuzz targets.

use proxy::http::{ChunkError, ChunkedDecoder};

/// Outcome of scanning a chunked body: (decoded data, bytes consumed, done) or the error with
/// the data handed out before it.
#[derive(Debug, PartialEq, Eq)]
pub struct Decoded {
    pub data: Vec<u8>,
    pub consumed: usize,
    pub result: Result<bool, ChunkError>,
}

/// Decode `input` arriving in two reads split at `cut`, checking every step's invariants.
pub fn decode_split(input: &[u8], cut: usize) -> Decoded {
    let cut = cut.min(input.len());
    let mut d = ChunkedDecoder::new();
    let mut data = Vec::new();
    let mut pos = 0;
    for end in [cut, input.len()] {
        while pos < end {
            let avail = &input[pos..end];
            let step = match d.decode(avail) {
                Ok(s) => s,
                Err(e) => {
                    // An error is sticky. How far the failing call got is not reported, so
                    // `consumed` is not part of an error outcome.
                    assert_eq!(d.decode(b"\r\n"), Err(e.clone()));
                    return Decoded {
                        data,
                        consumed: 0,
                        result: Err(e),
                    };
                }
            };
            assert!(step.consumed <= avail.len(), "consumed past the input");
            assert!(step.data.start <= step.data.end, "reversed data range");
            assert!(
                step.data.end <= step.consumed,
                "data outside consumed bytes"
            );
            assert_eq!(step.done, d.is_done());
            data.extend_from_slice(&avail[step.data.clone()]);
            pos += step.consumed;
            if step.done {
                let again = d.decode(avail).expect("done decoder must not fail");
                assert_eq!(
                    (again.consumed, again.done),
                    (0, true),
                    "done is not sticky"
                );
                assert!(again.data.is_empty());
                return Decoded {
                    data,
                    consumed: pos,
                    result: Ok(true),
                };
            }
            if step.consumed == 0 {
                assert!(avail.is_empty(), "no progress on non-empty input");
                break;
            }
        }
    }
    Decoded {
        data,
        consumed: pos,
        result: Ok(false),
    }
}

/// Chunked framing must not depend on how the input was split.
pub fn check_chunked(rest: &[u8], cut: usize) {
    let whole = decode_split(rest, rest.len());
    let split = decode_split(rest, cut);
    assert_eq!(whole, split, "chunked result depends on the split at {cut}");
}

/// Where to split `len` bytes, from one input byte.
pub fn cut_at(len: usize, b: u8) -> usize {
    len * usize::from(b) / 255
}
