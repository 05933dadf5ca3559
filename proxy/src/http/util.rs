//! Small allocation-free helpers shared by the parsers and the rewriters.

use std::ops::Range;

use super::HeaderSpan;

/// Offset range of `sub` inside `buf`. httparse hands out sub-slices of the buffer it parsed;
/// for the rare value it does not take from the buffer (a `""` literal for an empty reason
/// phrase) this returns an empty range instead of a bogus one.
pub(crate) fn span_of(buf: &[u8], sub: &[u8]) -> Range<usize> {
    let start = (sub.as_ptr() as usize).wrapping_sub(buf.as_ptr() as usize);
    match start.checked_add(sub.len()) {
        Some(end) if end <= buf.len() => start..end,
        _ => 0..0,
    }
}

/// `buf[r]`, or empty when the range does not fit (spans from another buffer must not panic).
pub(crate) fn at<'a>(buf: &'a [u8], r: &Range<usize>) -> &'a [u8] {
    buf.get(r.clone()).unwrap_or(&[])
}

pub(crate) fn trim_ows(mut v: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = v {
        v = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = v {
        v = rest;
    }
    v
}

/// Elements of a comma-separated list (RFC 9110 5.6.1), OWS trimmed, empty elements skipped.
pub(crate) fn list_items(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',')
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

/// Elements of a comma-separated list, OWS trimmed, empty elements kept (for fields such as
/// Content-Length where an empty element is an error).
pub(crate) fn list_items_strict(v: &[u8]) -> impl Iterator<Item = &[u8]> {
    v.split(|&b| b == b',').map(trim_ows)
}

/// `1*DIGIT` that fits a u64.
pub(crate) fn parse_decimal(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    let mut n: u64 = 0;
    for &b in v {
        if !b.is_ascii_digit() {
            return None;
        }
        n = n.checked_mul(10)?.checked_add(u64::from(b - b'0'))?;
    }
    Some(n)
}

pub(crate) fn name_is(buf: &[u8], h: &HeaderSpan, name: &[u8]) -> bool {
    at(buf, &h.name).eq_ignore_ascii_case(name)
}

/// RFC 9110 tchar.
pub(crate) fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Hop-by-hop fields (RFC 9110 7.6.1), plus Proxy-Connection which old clients still send.
/// `Trailer` is on the list too, as nginx's proxy module drops it: a chunked body we de-chunk
/// has no trailer section left to announce.
pub(crate) fn is_hop_by_hop(name: &[u8]) -> bool {
    const HOP: [&[u8]; 6] = [
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"upgrade",
    ];
    HOP.iter().any(|h| name.eq_ignore_ascii_case(h))
}

/// Connection options that only say something about persistence: they never name another header,
/// so a head with only these needs no per-header lookup.
fn is_plain_connection_option(token: &[u8]) -> bool {
    token.eq_ignore_ascii_case(b"close") || token.eq_ignore_ascii_case(b"keep-alive")
}

/// Does any Connection header list a token other than close / keep-alive?
pub(crate) fn has_connection_options(buf: &[u8], headers: &[HeaderSpan]) -> bool {
    headers.iter().any(|h| {
        name_is(buf, h, b"connection")
            && list_items(at(buf, &h.value)).any(|t| !is_plain_connection_option(t))
    })
}

/// Is `name` listed in a Connection header? Framing and routing fields (Host, Content-Length,
/// Transfer-Encoding) are never dropped this way: removing them while the body is still framed by
/// them would desynchronise the upstream connection (request smuggling).
pub(crate) fn listed_in_connection(buf: &[u8], headers: &[HeaderSpan], name: &[u8]) -> bool {
    if name.eq_ignore_ascii_case(b"host")
        || name.eq_ignore_ascii_case(b"content-length")
        || name.eq_ignore_ascii_case(b"transfer-encoding")
    {
        return false;
    }
    headers.iter().any(|h| {
        name_is(buf, h, b"connection")
            && list_items(at(buf, &h.value)).any(|t| t.eq_ignore_ascii_case(name))
    })
}

/// Persistence tokens over all Connection headers: (close, keep-alive).
pub(crate) fn connection_flags(buf: &[u8], h: &HeaderSpan, flags: &mut (bool, bool)) {
    for t in list_items(at(buf, &h.value)) {
        if t.eq_ignore_ascii_case(b"close") {
            flags.0 = true;
        } else if t.eq_ignore_ascii_case(b"keep-alive") {
            flags.1 = true;
        }
    }
}

/// Content-Length accumulated over every CL header and every list element: all must be valid and
/// equal (RFC 9112 6.3 point 5).
#[derive(Debug, Default)]
pub(crate) struct ContentLength {
    pub(crate) value: Option<u64>,
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ClError {
    Invalid,
    Conflict,
}

impl ContentLength {
    pub(crate) fn add(&mut self, v: &[u8]) -> Result<(), ClError> {
        for e in list_items_strict(v) {
            let n = parse_decimal(e).ok_or(ClError::Invalid)?;
            match self.value {
                Some(prev) if prev != n => return Err(ClError::Conflict),
                _ => self.value = Some(n),
            }
        }
        Ok(())
    }
}

/// Transfer-Encoding codings accumulated over every TE header, in order.
#[derive(Debug, Default)]
pub(crate) struct TransferEncoding {
    pub(crate) present: bool,
    /// The last coding seen is `chunked`.
    pub(crate) final_chunked: bool,
    /// `chunked` appeared before another coding (or twice).
    pub(crate) chunked_not_last: bool,
    /// A coding other than `chunked` (gzip, deflate, ...) was listed.
    pub(crate) other_coding: bool,
}

impl TransferEncoding {
    pub(crate) fn add(&mut self, v: &[u8]) {
        self.present = true;
        for coding in list_items(v) {
            if self.final_chunked {
                self.chunked_not_last = true;
            }
            self.final_chunked = coding.eq_ignore_ascii_case(b"chunked");
            self.other_coding |= !self.final_chunked;
        }
    }
}

/// The client address as nginx's `$remote_addr` prints it: IPv4-mapped IPv6 as plain IPv4.
pub(crate) fn canonical_ip(ip: std::net::IpAddr) -> std::net::IpAddr {
    ip.to_canonical()
}

/// Append the decimal form of `n` without going through `fmt` (no allocation, no formatter).
pub(crate) fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i -= 1;
        // n % 10 < 10, so the cast cannot truncate.
        tmp[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&tmp[i..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimal() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"+1"), None);
        assert_eq!(parse_decimal(b"1 2"), None);
        assert_eq!(parse_decimal(b"-1"), None);
    }

    #[test]
    fn lists() {
        let v: Vec<&[u8]> = list_items(b" a ,, b\t,c ").collect();
        assert_eq!(v, vec![&b"a"[..], b"b", b"c"]);
        let v: Vec<&[u8]> = list_items_strict(b"5, ,5").collect();
        assert_eq!(v, vec![&b"5"[..], b"", b"5"]);
    }

    #[test]
    fn u64_digits() {
        for n in [0u64, 7, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            push_u64(&mut out, n);
            assert_eq!(out, n.to_string().into_bytes());
        }
    }

    #[test]
    fn span_outside_buffer_is_empty() {
        let buf = b"abc".to_vec();
        assert_eq!(span_of(&buf, &buf[1..3]), 1..3);
        assert_eq!(span_of(&buf, b"zz"), 0..0);
        assert_eq!(at(&buf, &(2..9)), b"");
    }
}
