//! Incremental chunked transfer-coding scanner (RFC 9112 7.1).
//!
//! ```text
//! chunked-body = *chunk last-chunk trailer-section CRLF
//! chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//! last-chunk   = 1*("0") [ chunk-ext ] CRLF
//! ```
//!
//! Strictness (a deliberate difference from nginx, which also takes a bare LF and treats any
//! byte after `<size> ` as an extension): every line ends in CRLF, and after the size only
//! optional whitespace then `;` or CRLF may follow. Chunked bodies are usually forwarded verbatim,
//! so anything we accept that a backend could read differently is a request-smuggling risk.
//! Lenient like nginx: the content of a chunk extension is not validated beyond "no control
//! characters", whitespace is allowed between the size and `;`, and leading zeros in the size
//! are fine (bounded by the 4 KiB size-line limit).

use super::util::is_tchar;
use super::{ChunkError, ChunkStep};

/// Longest chunk-size line (size, extensions; CRLF excluded).
pub const MAX_SIZE_LINE: usize = 4 * 1024;
/// Largest trailer section (trailer field lines with their CRLFs, final CRLF excluded).
pub const MAX_TRAILERS: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum State {
    /// Reading hex digits of a chunk size.
    #[default]
    Size,
    /// Whitespace after the size, before `;` or CR.
    SizeWs,
    /// Inside chunk extensions, until CR.
    Ext,
    /// CR of the size line seen.
    SizeLf,
    /// Chunk data; `remaining` bytes left.
    Data,
    /// Expecting the CR after chunk data.
    DataCr,
    /// Expecting the LF after chunk data.
    DataLf,
    /// Start of a trailer line, or of the final CRLF.
    TrailerStart,
    TrailerName,
    TrailerValue,
    /// CR of a trailer line seen.
    TrailerLf,
    /// CR of the final empty line seen.
    FinalLf,
    Done,
    /// Invalid framing was found; every later call fails the same way.
    Failed(&'static str),
}

/// Incremental chunked transfer-coding scanner (RFC 9112 7.1), including chunk extensions and
/// trailer fields. Rejects bad hex, overflowing sizes, overlong size lines and missing CRLFs.
#[derive(Debug, Clone, Default)]
pub struct ChunkedDecoder {
    state: State,
    /// Chunk size being read, then the data bytes left in the current chunk.
    remaining: u64,
    /// A hex digit has been seen on this size line.
    digits: bool,
    /// Bytes of the current size line so far.
    line_len: usize,
    /// Bytes of the trailer section so far.
    trailer_len: usize,
}

impl ChunkedDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decode as much of `input` as is complete, appending the body data to `out` (or, with
    /// `keep_framing`, every consumed byte, for a pass-through). Returns the bytes consumed;
    /// stops at the end of the body.
    pub fn decode_into(
        &mut self,
        input: &[u8],
        keep_framing: bool,
        out: &mut Vec<u8>,
    ) -> Result<usize, ChunkError> {
        let mut pos = 0;
        while pos < input.len() && !self.is_done() {
            let step = self.decode(&input[pos..])?;
            if step.consumed == 0 {
                break;
            }
            let taken = &input[pos..pos + step.consumed];
            if keep_framing {
                out.extend_from_slice(taken);
            } else {
                out.extend_from_slice(&taken[step.data]);
            }
            pos += step.consumed;
        }
        Ok(pos)
    }

    /// Scan `input`; returns how much was consumed and which part of it is body data. Call again
    /// with the rest (or with more input) until `done`. `consumed == 0` with `!done` means more
    /// input is needed (it only happens when `input` is empty): a call with non-empty input
    /// before `done` consumes at least one byte or fails.
    ///
    /// A call stops before a second data range, so `consumed` can be less than `input.len()`. An
    /// error found after this call already produced data is reported by the next call, so the
    /// data handed out is always exactly the body bytes before the bad byte. Errors are sticky:
    /// once a call failed, every later call fails the same way (even with empty input).
    pub fn decode(&mut self, input: &[u8]) -> Result<ChunkStep, ChunkError> {
        if let State::Failed(m) = self.state {
            return Err(ChunkError(m));
        }
        let mut pos = 0;
        let mut data = 0..0;
        while let Some(&b) = input.get(pos) {
            match self.state {
                State::Done => break,
                State::Failed(m) => return Err(ChunkError(m)),
                State::Data => {
                    if !data.is_empty() {
                        break;
                    }
                    let avail = input.len() - pos;
                    // Bounded by `avail`, so the cast back to usize cannot truncate.
                    let take = self.remaining.min(avail as u64) as usize;
                    data = pos..pos + take;
                    pos += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.state = State::DataCr;
                    }
                }
                _ => {
                    match self.step(b) {
                        Ok(()) => pos += 1,
                        Err(e) if data.is_empty() => {
                            self.state = State::Failed(e.0);
                            return Err(e);
                        }
                        // Hand out the data first; the state is unchanged, so the next call
                        // fails on this same byte.
                        Err(_) => break,
                    }
                }
            }
        }
        Ok(ChunkStep {
            consumed: pos,
            data,
            done: self.state == State::Done,
        })
    }

    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    fn size_line_byte(&mut self) -> Result<(), ChunkError> {
        if self.line_len >= MAX_SIZE_LINE {
            return Err(ChunkError("chunk size line too long"));
        }
        self.line_len += 1;
        Ok(())
    }

    fn trailer_byte(&mut self) -> Result<(), ChunkError> {
        if self.trailer_len >= MAX_TRAILERS {
            return Err(ChunkError("trailer section too large"));
        }
        self.trailer_len += 1;
        Ok(())
    }

    /// One framing byte. On error the decoder is left unchanged.
    fn step(&mut self, b: u8) -> Result<(), ChunkError> {
        match self.state {
            State::Size => {
                if let Some(d) = hex_value(b) {
                    if self.remaining > u64::MAX >> 4 {
                        return Err(ChunkError("chunk size overflows"));
                    }
                    self.size_line_byte()?;
                    self.remaining = (self.remaining << 4) | u64::from(d);
                    self.digits = true;
                    return Ok(());
                }
                if !self.digits {
                    return Err(ChunkError("chunk size is not a hex number"));
                }
                self.after_size(b)
            }
            State::SizeWs => self.after_size(b),
            State::Ext => match b {
                b'\r' => {
                    self.state = State::SizeLf;
                    Ok(())
                }
                b'\t' | 0x20..=0x7e | 0x80..=0xff => self.size_line_byte(),
                _ => Err(ChunkError("invalid byte in chunk extension")),
            },
            State::SizeLf => {
                if b != b'\n' {
                    return Err(ChunkError("chunk size line not ended by CRLF"));
                }
                self.line_len = 0;
                self.digits = false;
                self.state = if self.remaining == 0 {
                    State::TrailerStart
                } else {
                    State::Data
                };
                Ok(())
            }
            State::DataCr => {
                if b != b'\r' {
                    return Err(ChunkError("chunk data not followed by CRLF"));
                }
                self.state = State::DataLf;
                Ok(())
            }
            State::DataLf => {
                if b != b'\n' {
                    return Err(ChunkError("chunk data not followed by CRLF"));
                }
                self.state = State::Size;
                Ok(())
            }
            State::TrailerStart => {
                if b == b'\r' {
                    self.state = State::FinalLf;
                    return Ok(());
                }
                if !is_tchar(b) {
                    return Err(ChunkError("invalid trailer field"));
                }
                self.trailer_byte()?;
                self.state = State::TrailerName;
                Ok(())
            }
            State::TrailerName => {
                if b == b':' {
                    self.trailer_byte()?;
                    self.state = State::TrailerValue;
                    Ok(())
                } else if is_tchar(b) {
                    self.trailer_byte()
                } else {
                    Err(ChunkError("invalid trailer field name"))
                }
            }
            State::TrailerValue => match b {
                b'\r' => {
                    self.trailer_byte()?;
                    self.state = State::TrailerLf;
                    Ok(())
                }
                b'\t' | 0x20..=0x7e | 0x80..=0xff => self.trailer_byte(),
                _ => Err(ChunkError("invalid trailer field value")),
            },
            State::TrailerLf => {
                if b != b'\n' {
                    return Err(ChunkError("trailer line not ended by CRLF"));
                }
                self.trailer_byte()?;
                self.state = State::TrailerStart;
                Ok(())
            }
            State::FinalLf => {
                if b != b'\n' {
                    return Err(ChunkError("chunked body not ended by CRLF"));
                }
                self.state = State::Done;
                Ok(())
            }
            // `decode` handles these without calling `step`; consuming nothing here keeps the
            // decoder safe even if that changes.
            State::Data | State::Done | State::Failed(_) => {
                Err(ChunkError("internal: no framing expected"))
            }
        }
    }

    /// A byte after the size digits: whitespace, `;` or CR.
    fn after_size(&mut self, b: u8) -> Result<(), ChunkError> {
        match b {
            b'\r' => {
                self.state = State::SizeLf;
                Ok(())
            }
            b' ' | b'\t' => {
                self.size_line_byte()?;
                self.state = State::SizeWs;
                Ok(())
            }
            b';' => {
                self.size_line_byte()?;
                self.state = State::Ext;
                Ok(())
            }
            _ => Err(ChunkError("invalid chunk size")),
        }
    }
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `pieces` one after another (carrying unconsumed bytes over, as a connection buffer
    /// would). Returns the decoded body, the bytes consumed in total, and the outcome.
    pub(crate) fn feed(pieces: &[&[u8]]) -> (Vec<u8>, usize, Result<bool, ChunkError>) {
        let mut d = ChunkedDecoder::new();
        let mut body = Vec::new();
        let mut pending: Vec<u8> = Vec::new();
        let mut total = 0;
        for piece in pieces {
            pending.extend_from_slice(piece);
            loop {
                let step = match d.decode(&pending) {
                    Ok(s) => s,
                    Err(e) => return (body, total, Err(e)),
                };
                assert!(step.consumed <= pending.len());
                assert!(step.data.start <= step.data.end && step.data.end <= step.consumed);
                assert_eq!(step.done, d.is_done());
                body.extend_from_slice(&pending[step.data.clone()]);
                pending.drain(..step.consumed);
                total += step.consumed;
                if step.done {
                    // Sticky, and consumes nothing more.
                    let again = d.decode(b"more").unwrap();
                    assert_eq!((again.consumed, again.done), (0, true));
                    return (body, total, Ok(true));
                }
                if step.consumed == 0 {
                    assert!(pending.is_empty(), "consumed nothing from non-empty input");
                    break;
                }
            }
        }
        (body, total, Ok(false))
    }

    fn whole(input: &[u8]) -> (Vec<u8>, usize, Result<bool, ChunkError>) {
        feed(&[input])
    }

    fn error_of(input: &[u8]) -> &'static str {
        match whole(input).2 {
            Err(ChunkError(m)) => m,
            other => panic!("{other:?} for {:?}", String::from_utf8_lossy(input)),
        }
    }

    #[test]
    fn simple_body() {
        let input = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nNEXT";
        let (body, used, r) = whole(input);
        assert_eq!(body, b"hello world");
        assert_eq!(used, input.len() - 4);
        assert_eq!(r, Ok(true));
    }

    #[test]
    fn one_data_range_per_call() {
        let mut d = ChunkedDecoder::new();
        let input = b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        let s = d.decode(input).unwrap();
        // First call: size line, data, CRLF and the next size line, stopping before "de".
        assert_eq!(&input[s.data.clone()], b"abc");
        assert_eq!(s.consumed, 11);
        assert!(!s.done);
        let s = d.decode(&input[11..]).unwrap();
        assert_eq!(&input[11..][s.data.clone()], b"de");
        assert_eq!(s.consumed, input.len() - 11);
        assert!(s.done);
        assert_eq!(d.decode(b"").unwrap().consumed, 0);
    }

    #[test]
    fn need_more_input() {
        let mut d = ChunkedDecoder::new();
        let s = d.decode(b"").unwrap();
        assert_eq!((s.consumed, s.done), (0, false));
        let s = d.decode(b"1").unwrap();
        assert_eq!((s.consumed, s.data.is_empty(), s.done), (1, true, false));
    }

    #[test]
    fn extensions_trailers_and_case() {
        let input = b"A;name=value;q=\"a;b\"\r\n0123456789\r\n\
                      a ; x\r\n0123456789\r\n\
                      000;last\r\nExpires: never\r\nX-Sum:\t1\r\n\r\n";
        let (body, used, r) = whole(input);
        assert_eq!(body, b"01234567890123456789");
        assert_eq!(used, input.len());
        assert_eq!(r, Ok(true));
        assert_eq!(whole(b"0\r\n\r\n"), (vec![], 5, Ok(true)));
        // Leading zeros beyond 16 digits are fine: the value is what is bounded.
        let (body, _, r) = whole(b"00000000000000000000001\r\nx\r\n0\r\n\r\n");
        assert_eq!((body, r), (b"x".to_vec(), Ok(true)));
        let (_, _, r) = whole(b"ffffffffffffffff\r\n");
        assert_eq!(r, Ok(false));
    }

    #[test]
    fn rejections() {
        assert_eq!(error_of(b"\r\n"), "chunk size is not a hex number");
        assert_eq!(error_of(b";ext\r\n"), "chunk size is not a hex number");
        assert_eq!(error_of(b"g\r\n"), "chunk size is not a hex number");
        assert_eq!(error_of(b"-1\r\n"), "chunk size is not a hex number");
        assert_eq!(error_of(b"+1\r\n"), "chunk size is not a hex number");
        assert_eq!(error_of(b" 1\r\n"), "chunk size is not a hex number");
        assert_eq!(error_of(b"0x10\r\n"), "invalid chunk size");
        assert_eq!(error_of(b"1g\r\n"), "invalid chunk size");
        assert_eq!(error_of(b"5 6\r\nhello\r\n"), "invalid chunk size");
        assert_eq!(error_of(b"1_0\r\n"), "invalid chunk size");
        assert_eq!(error_of(b"1\n"), "invalid chunk size");
        assert_eq!(error_of(b"1\rx"), "chunk size line not ended by CRLF");
        assert_eq!(error_of(b"1;a\n"), "invalid byte in chunk extension");
        assert_eq!(error_of(b"1;a\x00\r\n"), "invalid byte in chunk extension");
        assert_eq!(error_of(b"10000000000000000\r\n"), "chunk size overflows");
        assert_eq!(error_of(b"fffffffffffffffff\r\n"), "chunk size overflows");
        assert_eq!(error_of(b"1\r\nab\r\n"), "chunk data not followed by CRLF");
        assert_eq!(
            error_of(b"1\r\na\n0\r\n\r\n"),
            "chunk data not followed by CRLF"
        );
        assert_eq!(error_of(b"1\r\na\rx"), "chunk data not followed by CRLF");
        assert_eq!(error_of(b"0\r\n\n"), "invalid trailer field");
        assert_eq!(error_of(b"0\r\n\r\r"), "chunked body not ended by CRLF");
        assert_eq!(error_of(b"0\r\n: v\r\n\r\n"), "invalid trailer field");
        assert_eq!(error_of(b"0\r\n x: v\r\n\r\n"), "invalid trailer field");
        assert_eq!(
            error_of(b"0\r\nA b: v\r\n\r\n"),
            "invalid trailer field name"
        );
        assert_eq!(
            error_of(b"0\r\nnocolon\r\n\r\n"),
            "invalid trailer field name"
        );
        assert_eq!(error_of(b"0\r\nA: v\n\r\n"), "invalid trailer field value");
        assert_eq!(error_of(b"0\r\nA: v\rx"), "trailer line not ended by CRLF");

        let long_ext = format!("1;{}\r\n", "e".repeat(MAX_SIZE_LINE - 2));
        assert_eq!(whole(long_ext.as_bytes()).2, Ok(false));
        let too_long = format!("1;{}\r\n", "e".repeat(MAX_SIZE_LINE - 1));
        assert_eq!(error_of(too_long.as_bytes()), "chunk size line too long");
        let zeros = format!("{}1\r\n", "0".repeat(MAX_SIZE_LINE));
        assert_eq!(error_of(zeros.as_bytes()), "chunk size line too long");

        let trailer = |n: usize| format!("0\r\nX: {}\r\n\r\n", "v".repeat(n));
        // "X: " + value + CRLF is the whole trailer section.
        assert_eq!(whole(trailer(MAX_TRAILERS - 5).as_bytes()).2, Ok(true));
        assert_eq!(
            error_of(trailer(MAX_TRAILERS - 4).as_bytes()),
            "trailer section too large"
        );
    }

    #[test]
    fn data_before_an_error_is_handed_out_first() {
        let mut d = ChunkedDecoder::new();
        let input = b"3\r\nabcX";
        let s = d.decode(input).unwrap();
        assert_eq!(&input[s.data.clone()], b"abc");
        assert_eq!(s.consumed, 6);
        assert_eq!(
            d.decode(&input[6..]),
            Err(ChunkError("chunk data not followed by CRLF"))
        );
        // Sticky, whatever comes next.
        assert!(d.decode(b"\r\n0\r\n\r\n").is_err());
        assert!(d.decode(b"").is_err());
        assert!(!d.is_done());
    }

    /// Fuzz regression (request_framing, first run): a call that consumed framing and then
    /// failed left the decoder mid-line, so a retry with other bytes could succeed.
    #[test]
    fn errors_are_sticky() {
        let mut d = ChunkedDecoder::new();
        let e = d.decode(b"0;last\r\nX-Sum\xff\xff\n\r\n").unwrap_err();
        assert_eq!(e, ChunkError("invalid trailer field name"));
        assert_eq!(d.decode(b": v\r\n\r\n"), Err(e.clone()));
        assert_eq!(d.decode(b""), Err(e));
    }

    #[test]
    fn huge_chunk_size_is_streamed() {
        let mut d = ChunkedDecoder::new();
        let s = d.decode(b"7fffffffffffffff\r\n").unwrap();
        assert_eq!(s.consumed, 18);
        let s = d.decode(&[b'x'; 1000]).unwrap();
        assert_eq!((s.consumed, s.data), (1000, 0..1000));
    }
}
