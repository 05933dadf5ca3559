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

    /// Scan `input`; returns how much was consumed and which part of it is body data. Call again
    /// with the rest (or with more input) until `done`. `consumed == 0` with `!done` means more
    /// input is needed (it only happens when `input` is empty): a call with non-empty input
    /// before `done` consumes at least one byte or fails.
    ///
    /// A call stops before a second data range, so `consumed` can be less than `input.len()`. An
    /// error found after this call already produced data is reported by the next call, so the
    /// data handed out is always exactly the body bytes before the bad byte.
    pub fn decode(&mut self, input: &[u8]) -> Result<ChunkStep, ChunkError> {
        let mut pos = 0;
        let mut data = 0..0;
        while let Some(&b) = input.get(pos) {
            match self.state {
                State::Done => break,
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
                        Err(e) if data.is_empty() => return Err(e),
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
            State::Data | State::Done => Err(ChunkError("internal: no framing expected")),
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
