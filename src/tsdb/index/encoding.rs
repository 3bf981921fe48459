//! Byte-level helpers shared by the index, chunk and tombstone formats.
//!
//! Everything here is bit-compatible with Go's `encoding/binary` (big-endian fixed
//! width integers, LEB128 `uvarint`, zig-zag `varint`) and with Prometheus's
//! `tsdb/encoding` package, because the files we write must be read by Prometheus and
//! the files Prometheus writes must be read by us. Checksums are CRC-32 with the
//! Castagnoli polynomial (CRC-32C), stored big-endian.
//!
//! Decoding never panics: every read is bounds-checked and reports a [`DecodeError`]
//! that callers turn into a "corrupt file" error with context.

use std::fmt;

/// Longest Go `uvarint`/`varint` encoding of a 64-bit value.
pub const MAX_VARINT_LEN64: usize = 10;

/// CRC-32C (Castagnoli) of `data`, the checksum every Prometheus TSDB file uses.
pub fn crc32(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

/// Continues a CRC-32C over more data, for checksums over non-contiguous pieces.
pub fn crc32_append(crc: u32, data: &[u8]) -> u32 {
    crc32c::crc32c_append(crc, data)
}

/// Number of bytes `put_uvarint` uses for `v`.
pub fn uvarint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

/// Growable output buffer with the encoders of Prometheus's `Encbuf`.
#[derive(Debug, Default, Clone)]
pub struct Encbuf {
    pub b: Vec<u8>,
}

impl Encbuf {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Self {
            b: Vec::with_capacity(n),
        }
    }

    pub fn reset(&mut self) {
        self.b.clear();
    }

    pub fn len(&self) -> usize {
        self.b.len()
    }

    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    pub fn get(&self) -> &[u8] {
        &self.b
    }

    pub fn put_byte(&mut self, v: u8) {
        self.b.push(v);
    }

    pub fn put_bytes(&mut self, v: &[u8]) {
        self.b.extend_from_slice(v);
    }

    pub fn put_be32(&mut self, v: u32) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }

    pub fn put_be64(&mut self, v: u64) {
        self.b.extend_from_slice(&v.to_be_bytes());
    }

    /// Go's `binary.PutUvarint`: 7 bits per byte, least significant group first.
    pub fn put_uvarint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.b.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.b.push(v as u8);
    }

    /// Go's `binary.PutVarint`: zig-zag, then uvarint.
    pub fn put_varint(&mut self, v: i64) {
        self.put_uvarint(((v << 1) ^ (v >> 63)) as u64);
    }

    /// A string prefixed by its byte length as uvarint (`PutUvarintStr`).
    pub fn put_uvarint_str(&mut self, s: &str) {
        self.put_uvarint(s.len() as u64);
        self.b.extend_from_slice(s.as_bytes());
    }

    /// Appends the CRC-32C of everything currently in the buffer.
    pub fn put_crc32_of_contents(&mut self) {
        let c = crc32(&self.b);
        self.put_be32(c);
    }
}

/// Why a decode failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The data ended before the value did.
    UnexpectedEnd,
    /// A varint was longer than 10 bytes or did not fit 64 bits.
    VarintOverflow,
    /// A string was not UTF-8.
    InvalidUtf8,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::UnexpectedEnd => "unexpected end of data",
            DecodeError::VarintOverflow => "varint overflows 64 bits",
            DecodeError::InvalidUtf8 => "string is not valid utf-8",
        })
    }
}

impl std::error::Error for DecodeError {}

/// Go's `binary.Uvarint` on a slice: the value and the number of bytes read.
pub fn read_uvarint(b: &[u8]) -> Result<(u64, usize), DecodeError> {
    let mut x: u64 = 0;
    let mut s: u32 = 0;
    for (i, &byte) in b.iter().enumerate() {
        if i == MAX_VARINT_LEN64 {
            return Err(DecodeError::VarintOverflow);
        }
        if byte < 0x80 {
            if i == MAX_VARINT_LEN64 - 1 && byte > 1 {
                return Err(DecodeError::VarintOverflow);
            }
            return Ok((x | (u64::from(byte) << s), i + 1));
        }
        x |= u64::from(byte & 0x7f) << s;
        s += 7;
    }
    Err(DecodeError::UnexpectedEnd)
}

/// A read cursor over a byte slice, like Prometheus's `Decbuf` but returning errors
/// instead of storing them.
#[derive(Debug, Clone, Copy)]
pub struct Decbuf<'a> {
    b: &'a [u8],
}

impl<'a> Decbuf<'a> {
    pub fn new(b: &'a [u8]) -> Self {
        Self { b }
    }

    /// Bytes left to read.
    pub fn len(&self) -> usize {
        self.b.len()
    }

    pub fn is_empty(&self) -> bool {
        self.b.is_empty()
    }

    /// The unread rest.
    pub fn rest(&self) -> &'a [u8] {
        self.b
    }

    pub fn skip(&mut self, n: usize) -> Result<(), DecodeError> {
        self.bytes(n).map(|_| ())
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.b.len() {
            return Err(DecodeError::UnexpectedEnd);
        }
        let (head, tail) = self.b.split_at(n);
        self.b = tail;
        Ok(head)
    }

    pub fn byte(&mut self) -> Result<u8, DecodeError> {
        let v = *self.b.first().ok_or(DecodeError::UnexpectedEnd)?;
        self.b = &self.b[1..];
        Ok(v)
    }

    pub fn be32(&mut self) -> Result<u32, DecodeError> {
        let b = self.bytes(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub fn be64(&mut self) -> Result<u64, DecodeError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    pub fn uvarint(&mut self) -> Result<u64, DecodeError> {
        let (v, n) = read_uvarint(self.b)?;
        self.b = &self.b[n..];
        Ok(v)
    }

    /// A uvarint that must fit 32 bits (symbol references).
    pub fn uvarint32(&mut self) -> Result<u32, DecodeError> {
        u32::try_from(self.uvarint()?).map_err(|_| DecodeError::VarintOverflow)
    }

    pub fn varint(&mut self) -> Result<i64, DecodeError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    /// Bytes prefixed by a uvarint length.
    pub fn uvarint_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.uvarint()?;
        let n = usize::try_from(n).map_err(|_| DecodeError::UnexpectedEnd)?;
        self.bytes(n)
    }

    /// A UTF-8 string prefixed by a uvarint length.
    pub fn uvarint_str(&mut self) -> Result<&'a str, DecodeError> {
        std::str::from_utf8(self.uvarint_bytes()?).map_err(|_| DecodeError::InvalidUtf8)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn uvarint_matches_go_encoding() {
        // Values and encodings from Go's encoding/binary tests.
        let cases: &[(u64, &[u8])] = &[
            (0, &[0x00]),
            (1, &[0x01]),
            (127, &[0x7f]),
            (128, &[0x80, 0x01]),
            (300, &[0xac, 0x02]),
            (
                u64::MAX,
                &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ];
        for (v, enc) in cases {
            let mut e = Encbuf::new();
            e.put_uvarint(*v);
            assert_eq!(e.get(), *enc, "encoding {v}");
            assert_eq!(uvarint_len(*v), enc.len());
            assert_eq!(read_uvarint(enc), Ok((*v, enc.len())));
        }
    }

    #[test]
    fn varint_zigzag_round_trips_extremes() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            i64::MIN,
            i64::MAX,
            1_700_000_000_000,
        ] {
            let mut e = Encbuf::new();
            e.put_varint(v);
            let mut d = Decbuf::new(e.get());
            assert_eq!(d.varint(), Ok(v));
            assert!(d.is_empty());
        }
        let mut e = Encbuf::new();
        e.put_varint(-1);
        assert_eq!(e.get(), &[0x01]);
    }

    #[test]
    fn malformed_varints_are_errors() {
        assert_eq!(read_uvarint(&[]), Err(DecodeError::UnexpectedEnd));
        assert_eq!(read_uvarint(&[0x80, 0x80]), Err(DecodeError::UnexpectedEnd));
        assert_eq!(read_uvarint(&[0xff; 11]), Err(DecodeError::VarintOverflow));
        let mut ten = [0xffu8; 10];
        ten[9] = 0x02;
        assert_eq!(read_uvarint(&ten), Err(DecodeError::VarintOverflow));
    }

    #[test]
    fn decbuf_is_bounds_checked() {
        let mut d = Decbuf::new(&[0, 5, 1]);
        assert_eq!(d.be32(), Err(DecodeError::UnexpectedEnd));
        assert_eq!(d.uvarint_bytes(), Ok(&[][..]));
        assert_eq!(d.uvarint_bytes(), Err(DecodeError::UnexpectedEnd));
    }

    #[test]
    fn crc_is_castagnoli() {
        // The standard CRC-32C check value.
        assert_eq!(crc32(b"123456789"), 0xe306_9283);
        assert_eq!(crc32_append(crc32(b"1234"), b"56789"), 0xe306_9283);
    }
}
