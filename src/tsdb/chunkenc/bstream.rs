//! Bit-level writer and reader underneath the XOR chunk.
//!
//! The layout matches Prometheus's `bstream`: bits are packed MSB-first into
//! bytes, and unused low bits of the last byte are zero. The writer works on
//! whole words instead of single bits, but it reproduces the one quirk of the
//! Go writer that is visible in the output: after a run of whole bytes written
//! at a byte boundary, Go leaves an extra, completely empty byte at the end of
//! the stream (see [`BitWriter::mark_trailing_byte`]).

use super::ChunkError;

/// Appends bits to a byte vector, MSB-first.
///
/// The first `len` bytes of the vector *are* the chunk (header included), so
/// [`BitWriter::bytes`] hands out exactly the bytes Prometheus would persist
/// without any flushing. Past `len` the vector keeps zeroed slack (its whole
/// capacity) so that every write is one unconditional 8-byte
/// read-modify-write, with no per-write length or capacity bookkeeping.
#[derive(Clone, Debug)]
pub(super) struct BitWriter {
    /// Chunk bytes, then zeros up to `buf.len()`. A boxed slice rather than a
    /// `Vec`: the whole allocation is always addressable, so a separate capacity
    /// would only cost eight bytes in every open chunk of the head.
    buf: Box<[u8]>,
    /// Length of the encoded stream within `buf`. 32 bits are plenty (a chunk holds
    /// at most 65,535 samples of at most 20 bytes), and the four bytes saved make an
    /// open chunk, part of every series in the head, one allocator size class smaller.
    len: u32,
    /// Free (not yet written) low bits in byte `len - 1`, 0..=8. 8 means the
    /// last byte is the empty byte Go appends after `writeByte`.
    free: u32,
}

impl BitWriter {
    /// A writer whose stream starts with `header_len` zero bytes.
    pub(super) fn with_header(header_len: usize, capacity: usize) -> Self {
        BitWriter {
            buf: vec![0; capacity.max(header_len)].into_boxed_slice(),
            len: header_len as u32,
            free: 0,
        }
    }

    /// Resumes writing on `buf`, whose last byte has `free` unused low bits.
    /// The caller has validated `free <= 8` and cleared those bits, and `buf` holds a
    /// decoded chunk, so its length fits in 32 bits.
    pub(super) fn from_parts(buf: Vec<u8>, free: u32) -> Self {
        debug_assert!(free <= 8);
        BitWriter {
            len: u32::try_from(buf.len()).unwrap_or(u32::MAX),
            buf: buf.into_boxed_slice(),
            free,
        }
    }

    #[inline]
    fn len(&self) -> usize {
        self.len as usize
    }

    #[inline]
    pub(super) fn bytes(&self) -> &[u8] {
        self.buf.get(..self.len()).unwrap_or(&self.buf)
    }

    #[inline]
    pub(super) fn bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len().min(self.buf.len());
        self.buf.get_mut(..len).unwrap_or_default()
    }

    /// Drops the zeroed slack and spare capacity.
    pub(super) fn shrink_to_fit(&mut self) {
        if self.buf.len() > self.len() {
            let mut v = std::mem::take(&mut self.buf).into_vec();
            v.truncate(self.len());
            self.buf = v.into_boxed_slice();
        }
    }

    /// Moves the stream to a buffer of `capacity` bytes (or its length, if longer).
    pub(super) fn set_capacity(&mut self, capacity: usize) {
        let mut v = vec![0; capacity.max(self.len())];
        v.get_mut(..self.len())
            .unwrap_or_default()
            .copy_from_slice(self.bytes());
        self.buf = v.into_boxed_slice();
    }

    /// Unused low bits of the last byte.
    pub(super) fn free_bits(&self) -> u32 {
        self.free
    }

    pub(super) fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes of the stream that no later write can change: all but the last byte
    /// while it still has free bits (Go's empty trailing byte included).
    #[inline]
    pub(super) fn finished_len(&self) -> usize {
        self.len() - usize::from(self.free != 0)
    }

    /// Removes `n` finished bytes starting at `from` (which must lie within the
    /// finished part), shifting the rest of the stream down and re-zeroing the slack
    /// it leaves, so writing continues exactly as before.
    pub(super) fn remove_finished(&mut self, from: usize, n: usize) {
        debug_assert!(from + n <= self.finished_len());
        let end = self.len();
        self.buf.copy_within(from + n..end, from);
        self.len -= n as u32;
        if let Some(slack) = self.buf.get_mut(self.len()..end) {
            slack.fill(0);
        }
    }

    /// Whether the next bit starts a new byte.
    #[inline]
    pub(super) fn is_aligned(&self) -> bool {
        self.free == 0 || self.free == 8
    }

    /// Makes `buf[..min_len]` addressable, zero-filling new bytes, and exposes
    /// the whole capacity. Grows in small steps (64 bytes, or an eighth once
    /// larger) rather than doubling: a head keeps one open chunk per series on
    /// the heap, typically a few hundred bytes, and doubling would leave a
    /// quarter of that unused on average. The extra reallocations copy at most
    /// a few hundred bytes each.
    #[cold]
    #[inline(never)]
    fn grow(&mut self, min_len: usize) {
        let len = self.buf.len();
        let target = min_len.max(len + (len / 8).max(64));
        let mut v = std::mem::take(&mut self.buf).into_vec();
        v.resize(target, 0);
        self.buf = v.into_boxed_slice();
    }

    /// Writes `u`, an `n`-bit value (1 <= n <= 64, no bits set above bit
    /// `n`), most significant bit first. Callers mask their fields anyway, so
    /// the precondition saves a mask on the hot path.
    #[inline(always)]
    pub(super) fn write_bits(&mut self, u: u64, n: u32) {
        debug_assert!((1..=64).contains(&n));
        debug_assert!(n == 64 || u >> n == 0, "{u:#x} wider than {n} bits");
        let used = (8 - self.free) & 7;
        if used + n > 64 {
            // Only long writes (raw values, 64-bit deltas) get here.
            self.write_word(u >> 32, n - 32);
            self.write_word(u & 0xffff_ffff, 32);
        } else {
            self.write_word(u, n);
        }
    }

    /// `write_bits` for when the partly-filled last byte and the new bits
    /// fit one 64-bit word: load the 8 bytes starting at that byte (the
    /// partial byte, then zeroed slack), OR the bits in after the used ones,
    /// store the word back.
    #[inline(always)]
    fn write_word(&mut self, u: u64, n: u32) {
        let used = (8 - self.free) & 7;
        debug_assert!(n >= 1 && used + n <= 64);
        // A last byte with free bits (Go's empty trailing byte included) is
        // continued; after a full one, writing starts at `len`.
        let pos = self.len() - usize::from(self.free != 0);
        if self.buf.len() < pos + 8 {
            self.grow(pos + 8);
        }
        let Some(window) = self
            .buf
            .get_mut(pos..)
            .and_then(<[u8]>::first_chunk_mut::<8>)
        else {
            return;
        };
        let total = used + n;
        let word = u64::from_be_bytes(*window) | (u << (64 - total));
        *window = word.to_be_bytes();
        let nbytes = total.div_ceil(8);
        self.len = (pos + nbytes as usize) as u32;
        self.free = nbytes * 8 - total;
    }

    /// Reproduces Go's trailing empty byte.
    ///
    /// Go's `writeByte` always appends a fresh byte for the bits that spill
    /// over; when it is called on a byte boundary nothing spills, so the
    /// stream ends in a zero byte with all 8 bits free. That byte is part of
    /// `Bytes()` and therefore of the persisted chunk. It exists exactly when
    /// the last `writeBits` call of a sample had a multiple of 8 bits and
    /// ended on a byte boundary; the XOR appender calls this in that case.
    #[inline]
    pub(super) fn mark_trailing_byte(&mut self) {
        if self.free == 0 {
            if self.buf.len() <= self.len() {
                self.grow(self.len() + 1);
            }
            self.len += 1;
            self.free = 8;
        }
    }
}

/// Reads bits MSB-first from a byte slice, a 64-bit word at a time.
///
/// Never panics: running out of input is reported as [`ChunkError::Truncated`].
#[derive(Clone, Debug)]
pub(super) struct BitReader<'a> {
    data: &'a [u8],
    /// Next byte of `data` to load into `buf`.
    pos: usize,
    /// Left-aligned bit buffer; the top `valid` bits are unread. Bits below
    /// them are either zero or copies of the data that will be loaded next.
    buf: u64,
    /// Number of unread bits in `buf`, 0..=64.
    valid: u32,
}

impl<'a> BitReader<'a> {
    pub(super) fn new(data: &'a [u8]) -> Self {
        BitReader {
            data,
            pos: 0,
            buf: 0,
            valid: 0,
        }
    }

    /// Bits consumed so far.
    #[inline]
    pub(super) fn bit_position(&self) -> usize {
        self.pos * 8 - self.valid as usize
    }

    /// Number of bits buffered; [`peek`](Self::peek) may look at that many.
    #[inline(always)]
    pub(super) fn buffered(&self) -> u32 {
        self.valid
    }

    /// The buffer, next bit in the MSB. Only the top
    /// [`buffered`](Self::buffered) bits are meaningful.
    #[inline(always)]
    pub(super) fn peek(&self) -> u64 {
        self.buf
    }

    /// Drops `n` peeked bits; `n` must not exceed `buffered()` and be < 64.
    #[inline(always)]
    pub(super) fn consume(&mut self, n: u32) {
        debug_assert!(n <= self.valid && n < 64);
        self.buf <<= n;
        self.valid -= n;
    }

    /// Loads as many whole bytes as fit. Callers only refill when fewer than
    /// 57 bits are buffered; afterwards at least 56 are, unless the data ran
    /// out.
    #[inline(always)]
    pub(super) fn refill(&mut self) {
        debug_assert!(self.valid < 57);
        if let Some(word) = self.data.get(self.pos..).and_then(<[u8]>::first_chunk::<8>) {
            // Fast path: OR in a whole word; bits beyond the whole bytes we
            // account for are real data and get OR-ed in again identically by
            // the next refill.
            self.buf |= u64::from_be_bytes(*word) >> self.valid;
            let nbytes = (63 - self.valid) / 8;
            self.pos += nbytes as usize;
            self.valid += nbytes * 8;
        } else {
            self.refill_tail();
        }
    }

    /// Byte-at-a-time refill for the last 7 bytes of the data.
    #[cold]
    #[inline(never)]
    fn refill_tail(&mut self) {
        while self.valid <= 56 {
            let Some(&b) = self.data.get(self.pos) else {
                break;
            };
            self.buf |= u64::from(b) << (56 - self.valid);
            self.valid += 8;
            self.pos += 1;
        }
    }

    /// Reads `n` bits, 1 <= n <= 56.
    #[inline(always)]
    pub(super) fn read_bits(&mut self, n: u32) -> Result<u64, ChunkError> {
        debug_assert!((1..=56).contains(&n));
        if self.valid < n {
            self.refill();
            if self.valid < n {
                return Err(ChunkError::Truncated);
            }
        }
        let v = self.buf >> (64 - n);
        self.buf <<= n;
        self.valid -= n;
        Ok(v)
    }

    /// Reads `n` bits, 1 <= n <= 64.
    #[inline(always)]
    pub(super) fn read_bits_wide(&mut self, n: u32) -> Result<u64, ChunkError> {
        if n <= 56 {
            self.read_bits(n)
        } else {
            let hi = self.read_bits(n - 32)?;
            let lo = self.read_bits(32)?;
            Ok((hi << 32) | lo)
        }
    }

    #[inline(always)]
    pub(super) fn read_bit(&mut self) -> Result<bool, ChunkError> {
        Ok(self.read_bits(1)? != 0)
    }

    /// Reads a unary prefix of up to `max` one-bits (max <= 8), consuming the
    /// terminating zero if there is one, and returns the number of ones.
    #[inline(always)]
    pub(super) fn read_ones_prefix(&mut self, max: u32) -> Result<u32, ChunkError> {
        debug_assert!(max <= 8);
        if self.valid < max {
            self.refill();
        }
        if self.valid >= max {
            let ones = (!self.buf).leading_zeros().min(max);
            let used = if ones < max { ones + 1 } else { max };
            self.buf <<= used;
            self.valid -= used;
            return Ok(ones);
        }
        // Fewer than `max` bits left in the whole stream: go bit by bit, so a
        // short prefix right at the end still decodes.
        let mut ones = 0;
        while ones < max && self.read_bit()? {
            ones += 1;
        }
        Ok(ones)
    }

    /// Reads a Go `binary.ReadUvarint` varint, byte by byte from the bit
    /// stream (it need not be byte aligned).
    pub(super) fn read_uvarint(&mut self) -> Result<u64, ChunkError> {
        let mut x = 0u64;
        let mut shift = 0u32;
        for i in 0..MAX_VARINT_LEN {
            let b = self.read_bits(8)?;
            if b < 0x80 {
                if i == MAX_VARINT_LEN - 1 && b > 1 {
                    return Err(ChunkError::VarintOverflow);
                }
                return Ok(x | (b << shift));
            }
            x |= (b & 0x7f) << shift;
            shift += 7;
        }
        Err(ChunkError::VarintOverflow)
    }

    /// Reads a Go `binary.ReadVarint` (zigzag) varint.
    pub(super) fn read_varint(&mut self) -> Result<i64, ChunkError> {
        let ux = self.read_uvarint()?;
        let x = (ux >> 1) as i64;
        Ok(if ux & 1 != 0 { !x } else { x })
    }
}

/// Longest varint encoding of a 64-bit value.
pub(super) const MAX_VARINT_LEN: usize = 10;

/// Go's `binary.PutUvarint`: returns the buffer and the number of bytes used.
#[inline]
pub(super) fn put_uvarint(mut x: u64) -> ([u8; MAX_VARINT_LEN], usize) {
    let mut out = [0u8; MAX_VARINT_LEN];
    let mut n = 0;
    while x >= 0x80 && n < MAX_VARINT_LEN - 1 {
        out[n] = (x as u8) | 0x80;
        x >>= 7;
        n += 1;
    }
    out[n] = x as u8;
    (out, n + 1)
}

/// Go's `binary.PutVarint` (zigzag encoding).
#[inline]
pub(super) fn put_varint(x: i64) -> ([u8; MAX_VARINT_LEN], usize) {
    let mut ux = (x as u64) << 1;
    if x < 0 {
        ux = !ux;
    }
    put_uvarint(ux)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn varint_matches_go_examples() {
        // Values from Go's encoding/binary documentation and tests.
        let (b, n) = put_uvarint(300);
        assert_eq!(&b[..n], &[0xac, 0x02]);
        let (b, n) = put_varint(-1);
        assert_eq!(&b[..n], &[0x01]);
        let (b, n) = put_varint(1);
        assert_eq!(&b[..n], &[0x02]);
        let (b, n) = put_varint(-65);
        assert_eq!(&b[..n], &[0x81, 0x01]);
        let (b, n) = put_uvarint(u64::MAX);
        assert_eq!(n, 10);
        assert_eq!(b[9], 0x01);
    }

    #[test]
    fn uvarint_overflow_is_an_error() {
        let data = [0xffu8; 11];
        let mut r = BitReader::new(&data);
        assert!(matches!(r.read_uvarint(), Err(ChunkError::VarintOverflow)));
        let mut data = [0xffu8; 10];
        data[9] = 0x02;
        let mut r = BitReader::new(&data);
        assert!(matches!(r.read_uvarint(), Err(ChunkError::VarintOverflow)));
    }

    #[test]
    fn trailing_byte_only_on_boundary() {
        let mut w = BitWriter::with_header(0, 0);
        w.write_bits(0xab, 8);
        w.mark_trailing_byte();
        assert_eq!(w.bytes(), &[0xab, 0x00]);
        w.write_bits(1, 1);
        assert_eq!(w.bytes(), &[0xab, 0x80]);
        w.mark_trailing_byte();
        assert_eq!(w.bytes(), &[0xab, 0x80]);
    }

    proptest! {
        #[test]
        fn bits_round_trip(fields in prop::collection::vec((any::<u64>(), 1u32..=64), 0..64)) {
            let mut w = BitWriter::with_header(0, 0);
            let mask = |n: u32| if n == 64 { u64::MAX } else { (1u64 << n) - 1 };
            for &(v, n) in &fields {
                w.write_bits(v & mask(n), n);
            }
            let total: u32 = fields.iter().map(|f| f.1).sum();
            prop_assert_eq!(w.bytes().len(), total.div_ceil(8) as usize);
            let mut r = BitReader::new(w.bytes());
            for &(v, n) in &fields {
                prop_assert_eq!(r.read_bits_wide(n).ok(), Some(v & mask(n)));
            }
            prop_assert_eq!(r.bit_position(), total as usize);
        }

        #[test]
        fn varint_round_trip(x in any::<i64>(), ux in any::<u64>()) {
            let (b, n) = put_varint(x);
            let mut r = BitReader::new(&b[..n]);
            prop_assert_eq!(r.read_varint().ok(), Some(x));
            let (b, n) = put_uvarint(ux);
            let mut r = BitReader::new(&b[..n]);
            prop_assert_eq!(r.read_uvarint().ok(), Some(ux));
            prop_assert_eq!(r.bit_position(), n * 8);
        }
    }
}
