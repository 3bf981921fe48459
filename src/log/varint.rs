//! Protobuf's base-128 varints (zigzag for signed values): the integers of the log's
//! records and of the TSDB's head images.

#[inline]
pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, zigzag(v));
}

/// A signed value as zigzag encodes it (0, -1, 1, -2, … as 0, 1, 2, 3, …).
#[inline]
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Reads a varint from the front of `buf` and advances past it; `None` when `buf`
/// ends first or the value overflows 64 bits.
#[inline]
pub fn take_uvarint(buf: &mut &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let (&b, rest) = buf.split_first()?;
        *buf = rest;
        v |= u64::from(b & 0x7f) << shift;
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

/// The signed value of a zigzag-encoded varint.
#[inline]
pub fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_what_ends_early() {
        for v in [0i64, 1, -1, 63, -64, 300, i64::MAX, i64::MIN] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            let mut buf = &out[..];
            assert_eq!(take_uvarint(&mut buf).map(unzigzag), Some(v));
            assert!(buf.is_empty());
            let mut short = &out[..out.len() - 1];
            assert_eq!(take_uvarint(&mut short), None);
        }
        let mut too_long = &[0xffu8; 11][..];
        assert_eq!(take_uvarint(&mut too_long), None);
    }
}
