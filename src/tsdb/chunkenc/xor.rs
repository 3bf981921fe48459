//! The XOR ("Gorilla") float chunk, byte-for-byte as Prometheus writes it.
//!
//! Layout: a 2-byte big-endian sample count, then a bit stream:
//!
//! * sample 0: zigzag varint timestamp, then the 64 raw value bits;
//! * sample 1: uvarint timestamp delta, then the XOR-encoded value;
//! * sample n: delta-of-delta of the timestamp in one of five buckets
//!   (`0`, `10`+14 bits, `110`+17, `1110`+20, `1111`+64), then the value.
//!
//! A value is XOR-ed with its predecessor: `0` if equal; otherwise `1` and
//! either `0` + the meaningful bits inside the previous leading/trailing zero
//! window, or `1` + 5 bits leading zeros + 6 bits significant-bit count (64
//! stored as 0) + the significant bits. Leading zeros are capped at 31 so they
//! fit in 5 bits.

use super::ChunkError;
use super::bstream::{BitReader, BitWriter, put_uvarint, put_varint};

/// Bytes of the sample-count header in front of the bit stream.
pub const HEADER_LEN: usize = 2;

/// Initial capacity, as in Prometheus. Typical scrape data takes 1-2 bytes
/// per sample, so a 120-sample chunk grows at most once or twice, while the
/// many short-lived or sparse series in a head do not over-allocate.
const INITIAL_CAPACITY: usize = 128;

/// `leading` value meaning "no leading/trailing window chosen yet", so the
/// first non-zero XOR always writes a new window.
const NO_WINDOW: u8 = 0xff;

/// Whether `x` fits the `nbits`-wide delta-of-delta bucket. The range is
/// asymmetric, `[-(2^(n-1) - 1), 2^(n-1)]`, because that is what Prometheus's
/// decoder accepts: a raw field above `2^(n-1)` is read as negative.
#[inline]
fn bit_range(x: i64, nbits: u32) -> bool {
    let half = 1i64 << (nbits - 1);
    -(half - 1) <= x && x <= half
}

fn header_count(bytes: &[u8]) -> Option<u16> {
    bytes
        .first_chunk::<HEADER_LEN>()
        .map(|h| u16::from_be_bytes(*h))
}

/// What an appender keeps besides the bytes: see [`XorChunk::state`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XorState {
    /// Timestamp of the last sample.
    pub t: i64,
    /// Bits of the last value.
    pub v: u64,
    /// Last timestamp delta.
    pub t_delta: u64,
    /// The XOR window (`0xff`: none chosen yet).
    pub leading: u8,
    pub trailing: u8,
    /// Unused low bits of the last byte (0..=8).
    pub free_bits: u8,
}

/// An XOR chunk under construction (or re-opened for appending).
///
/// The encoded bytes are kept complete after every append, so [`bytes`]
/// never needs a flush and readers can iterate a snapshot at any time.
///
/// [`bytes`]: XorChunk::bytes
#[derive(Clone, Debug)]
pub struct XorChunk {
    w: BitWriter,
    /// Timestamp of the last sample.
    t: i64,
    /// Raw bits of the last value (bits, not `f64`, so NaN payloads survive).
    v: u64,
    /// Last timestamp delta, as the unsigned wrapping value Prometheus keeps.
    t_delta: u64,
    leading: u8,
    trailing: u8,
}

impl Default for XorChunk {
    fn default() -> Self {
        Self::new()
    }
}

impl XorChunk {
    pub fn new() -> Self {
        Self::with_capacity(INITIAL_CAPACITY)
    }

    /// An empty chunk whose buffer starts at `capacity` bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        XorChunk {
            w: BitWriter::with_header(HEADER_LEN, capacity),
            t: 0,
            v: 0,
            t_delta: 0,
            leading: NO_WINDOW,
            trailing: 0,
        }
    }

    #[inline]
    fn count(&self) -> u16 {
        header_count(self.w.bytes()).unwrap_or(0)
    }

    #[inline]
    pub fn num_samples(&self) -> usize {
        usize::from(self.count())
    }

    /// The newest sample's timestamp and value bits, if there is one.
    #[inline]
    pub fn last_sample(&self) -> Option<(i64, u64)> {
        (self.count() > 0).then_some((self.t, self.v))
    }

    /// The encoded chunk, header included: what Prometheus stores on disk.
    #[inline]
    pub fn bytes(&self) -> &[u8] {
        self.w.bytes()
    }

    /// Appends a sample. The caller guarantees `t` is strictly greater than
    /// the previous timestamp and that the chunk holds fewer than 65535
    /// samples; a sample beyond that limit is dropped (the 16-bit header
    /// could not count it, and wrapping it would corrupt the chunk).
    pub fn append(&mut self, t: i64, v: f64) {
        let num = self.count();
        debug_assert!(num < u16::MAX, "XOR chunk is full (65535 samples)");
        if num == u16::MAX {
            return;
        }
        let vbits = v.to_bits();
        let t_delta = if num == 0 {
            self.write_first(t, vbits);
            0
        } else {
            let t_delta = t.wrapping_sub(self.t) as u64;
            // The timestamp's bits are written together with the value's
            // leading control bits where they fit in one word.
            let (prefix, prefix_len) = if num == 1 {
                self.write_first_delta(t_delta);
                (0, 0)
            } else {
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                let d = dod as u64;
                if dod == 0 {
                    (0, 1)
                } else if bit_range(dod, 14) {
                    ((0b10 << 14) | (d & 0x3fff), 2 + 14)
                } else if bit_range(dod, 17) {
                    ((0b110 << 17) | (d & 0x1_ffff), 3 + 17)
                } else if bit_range(dod, 20) {
                    ((0b1110 << 20) | (d & 0xf_ffff), 4 + 20)
                } else {
                    self.w.write_bits(0b1111, 4);
                    self.w.write_bits(d, 64);
                    (0, 0)
                }
            };
            self.write_value(prefix, prefix_len, vbits);
            t_delta
        };
        self.t = t;
        self.v = vbits;
        self.t_delta = t_delta;
        if let Some(h) = self.w.bytes_mut().first_chunk_mut::<HEADER_LEN>() {
            *h = (num + 1).to_be_bytes();
        }
    }

    /// Sample 0: zigzag varint timestamp and the raw value bits.
    #[inline(never)]
    fn write_first(&mut self, t: i64, vbits: u64) {
        let (buf, n) = put_varint(t);
        for &b in &buf[..n] {
            self.w.write_bits(u64::from(b), 8);
        }
        self.w.write_bits(vbits, 64);
        // Go ends this sample with `writeByte`s on a byte boundary.
        self.w.mark_trailing_byte();
    }

    /// Sample 1's timestamp: the plain delta as a uvarint.
    #[inline(never)]
    fn write_first_delta(&mut self, t_delta: u64) {
        let (buf, n) = put_uvarint(t_delta);
        for &b in &buf[..n] {
            self.w.write_bits(u64::from(b), 8);
        }
    }

    /// Writes `prefix` (its low `prefix_len` bits, at most 24) followed by the
    /// XOR encoding of `vbits` against the previous value.
    #[inline(always)]
    fn write_value(&mut self, prefix: u64, prefix_len: u32, vbits: u64) {
        let delta = vbits ^ self.v;
        if delta == 0 {
            // `prefix` then a single 0 bit.
            self.w.write_bits(prefix << 1, prefix_len + 1);
            return;
        }
        let leading = (delta.leading_zeros() as u8).min(31);
        let trailing = delta.trailing_zeros() as u8;

        let (ctrl, ctrl_len, payload, sig) = if self.leading != NO_WINDOW
            && leading >= self.leading
            && trailing >= self.trailing
        {
            // `10`: the value fits the previous window.
            let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
            (
                (prefix << 2) | 0b10,
                prefix_len + 2,
                delta >> self.trailing,
                sig,
            )
        } else {
            // `11` + 5 bits leading + 6 bits significant count + bits.
            self.leading = leading;
            self.trailing = trailing;
            let sig = 64 - u32::from(leading) - u32::from(trailing);
            // 64 significant bits do not fit 6 bits; 0 stands for 64
            // (0 itself never occurs: that would be delta == 0).
            let ctrl =
                (prefix << 13) | (0b11 << 11) | (u64::from(leading) << 6) | u64::from(sig & 0x3f);
            (ctrl, prefix_len + 13, delta >> trailing, sig)
        };
        if ctrl_len + sig <= 64 {
            // ctrl_len >= 2, so sig < 64 and the shift is in range.
            self.w.write_bits((ctrl << sig) | payload, ctrl_len + sig);
        } else {
            self.w.write_bits(ctrl, ctrl_len);
            self.w.write_bits(payload, sig);
        }
        // Go's last write of the sample was `writeBits(payload, sig)`; with a
        // whole number of bytes ending on a boundary it leaves an empty byte.
        if sig % 8 == 0 && self.w.is_aligned() {
            self.w.mark_trailing_byte();
        }
    }

    pub fn iter(&self) -> XorIterator<'_> {
        XorIterator::new(self.bytes())
    }

    /// Re-opens an encoded chunk (e.g. read back from disk) for appending.
    ///
    /// The whole chunk is decoded to recover the appender state, and the
    /// exact end of the bit stream, so that further appends produce the same
    /// bytes as if the chunk had never been closed. (Prometheus's own
    /// `FromData` + `Appender` loses partially-written last bytes and never
    /// restores the "no window yet" state; we do better but stay readable by
    /// it.) Stray bits after the last sample are cleared; more than one byte
    /// of slack after the last sample is rejected as corrupt.
    pub fn from_bytes(mut bytes: Vec<u8>) -> Result<Self, ChunkError> {
        let mut it = XorIterator::new(&bytes);
        for _ in it.by_ref() {}
        if let Some(err) = it.err {
            return Err(err);
        }
        let used_bits = it.r.bit_position();
        let stream_bits = (bytes.len() - HEADER_LEN) * 8;
        let slack = stream_bits - used_bits;
        if slack > 8 {
            return Err(ChunkError::TrailingData(slack));
        }
        let (t, v, t_delta) = (it.t, it.v, it.t_delta);
        // Until a window is written, a fresh appender holds the sentinel;
        // restoring it keeps continued appends identical to one long run.
        let leading = if it.window_seen {
            it.leading
        } else {
            NO_WINDOW
        };
        let trailing = it.trailing;
        // `slack` is 0..=8 here; clear the unused low bits of the last byte,
        // since appends OR into them.
        if slack > 0
            && let Some(last) = bytes.last_mut()
        {
            *last &= !((1u16 << slack) - 1) as u8;
        }
        Ok(XorChunk {
            w: BitWriter::from_parts(bytes, slack as u32),
            t,
            v,
            t_delta,
            leading,
            trailing,
        })
    }

    /// The appender state [`XorChunk::from_bytes`] recovers by decoding the chunk.
    pub fn state(&self) -> XorState {
        XorState {
            t: self.t,
            v: self.v,
            t_delta: self.t_delta,
            leading: self.leading,
            trailing: self.trailing,
            free_bits: self.w.free_bits() as u8,
        }
    }

    /// Re-opens a chunk from its bytes and the state [`XorChunk::state`] gave, without
    /// decoding it: `bytes` is the header and the stream after what was drained (see
    /// [`XorChunk::drain_stream`]), put in a buffer of at least `capacity` bytes.
    /// Appending goes on exactly as on the chunk the state was taken from.
    pub fn from_state(bytes: &[u8], state: XorState, capacity: usize) -> Result<Self, ChunkError> {
        if bytes.len() < HEADER_LEN
            || state.free_bits > 8
            || (bytes.len() == HEADER_LEN && state.free_bits != 0)
            || (state.leading != NO_WINDOW && state.leading > 31)
            || state.trailing > 64
        {
            return Err(ChunkError::Truncated);
        }
        let mut buf = Vec::with_capacity(capacity.max(bytes.len()));
        buf.extend_from_slice(bytes);
        let mut w = BitWriter::from_parts(buf, u32::from(state.free_bits));
        w.set_capacity(capacity);
        Ok(XorChunk {
            w,
            t: state.t,
            v: state.v,
            t_delta: state.t_delta,
            leading: state.leading,
            trailing: state.trailing,
        })
    }

    /// Bytes of the bit stream after the header that later appends can no longer
    /// change: these may be moved elsewhere with [`XorChunk::drain_stream`].
    #[inline]
    pub fn finished_stream_len(&self) -> usize {
        self.w.finished_len().saturating_sub(HEADER_LEN)
    }

    /// Hands the first `n` finished stream bytes (those right after the header) to
    /// `sink` and removes them from the chunk. Afterwards [`XorChunk::bytes`] holds
    /// the header and the rest of the stream only: the caller keeps the drained bytes
    /// and puts them back between the two to get the whole chunk. Appending goes on
    /// unchanged, and the buffer stops growing with the chunk.
    pub fn drain_stream<E>(
        &mut self,
        n: usize,
        sink: impl FnOnce(&[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let n = n.min(self.finished_stream_len());
        if let Some(part) = self.w.bytes().get(HEADER_LEN..HEADER_LEN + n) {
            sink(part)?;
        }
        self.w.remove_finished(HEADER_LEN, n);
        Ok(())
    }

    /// Drops spare capacity once the chunk is complete.
    pub fn shrink_to_fit(&mut self) {
        self.w.shrink_to_fit();
    }

    /// Heap bytes held by this chunk, for memory accounting.
    pub fn heap_bytes(&self) -> usize {
        self.w.capacity()
    }
}

/// Decodes the samples of XOR chunk bytes.
///
/// Works on any byte slice (mmapped block data included) and never panics:
/// on malformed input it stops and [`XorIterator::err`] reports why.
#[derive(Clone, Debug)]
pub struct XorIterator<'a> {
    r: BitReader<'a>,
    total: u16,
    read: u16,
    t: i64,
    v: u64,
    t_delta: u64,
    leading: u8,
    trailing: u8,
    /// Whether a `11` value header has set the window yet.
    window_seen: bool,
    err: Option<ChunkError>,
}

impl<'a> XorIterator<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        let (total, err) = match header_count(bytes) {
            Some(n) => (n, None),
            None => (0, Some(ChunkError::Truncated)),
        };
        XorIterator {
            r: BitReader::new(bytes.get(HEADER_LEN..).unwrap_or(&[])),
            total,
            read: 0,
            t: 0,
            v: 0,
            t_delta: 0,
            leading: 0,
            trailing: 0,
            window_seen: false,
            err,
        }
    }

    /// Why iteration stopped early, if it did.
    pub fn err(&self) -> Option<&ChunkError> {
        self.err.as_ref()
    }

    #[inline(always)]
    fn decode_next(&mut self) -> Result<(), ChunkError> {
        match self.read {
            0 => {
                self.t = self.r.read_varint()?;
                self.v = self.r.read_bits_wide(64)?;
                return Ok(());
            }
            1 => {
                self.t_delta = self.r.read_uvarint()?;
            }
            _ => {
                let dod = self.read_dod()?;
                self.t_delta = (self.t_delta as i64).wrapping_add(dod) as u64;
            }
        }
        self.t = self.t.wrapping_add(self.t_delta as i64);
        self.read_value()
    }

    /// Reads a delta-of-delta. The common buckets are decoded from one peek
    /// at the bit buffer; the checked bit-by-bit path is only needed within
    /// a few bytes of the end of the data and for the 64-bit bucket.
    #[inline(always)]
    fn read_dod(&mut self) -> Result<i64, ChunkError> {
        const WIDEST_FAST: u32 = 4 + 20;
        if self.r.buffered() < WIDEST_FAST {
            self.r.refill();
        }
        if self.r.buffered() >= WIDEST_FAST {
            let buf = self.r.peek();
            let (used, dod) = match (!buf).leading_zeros() {
                0 => (1, 0),
                1 => (2 + 14, sign_extend((buf >> (64 - 16)) & 0x3fff, 14)),
                2 => (3 + 17, sign_extend((buf >> (64 - 20)) & 0x1_ffff, 17)),
                3 => (4 + 20, sign_extend((buf >> (64 - 24)) & 0xf_ffff, 20)),
                _ => {
                    self.r.consume(4);
                    return Ok(self.r.read_bits_wide(64)? as i64);
                }
            };
            self.r.consume(used);
            return Ok(dod);
        }
        Ok(match self.r.read_ones_prefix(4)? {
            0 => 0,
            1 => sign_extend(self.r.read_bits(14)?, 14),
            2 => sign_extend(self.r.read_bits(17)?, 17),
            3 => sign_extend(self.r.read_bits(20)?, 20),
            _ => self.r.read_bits_wide(64)? as i64,
        })
    }

    #[inline(always)]
    fn read_value(&mut self) -> Result<(), ChunkError> {
        // Control bits: `0`, `10`, or `11` + 5 bits leading + 6 bits count.
        const CONTROL: u32 = 2 + 5 + 6;
        if self.r.buffered() < CONTROL {
            self.r.refill();
        }
        let hdr = if self.r.buffered() >= CONTROL {
            let buf = self.r.peek();
            match buf >> 62 {
                0 | 1 => {
                    self.r.consume(1);
                    return Ok(());
                }
                2 => {
                    self.r.consume(2);
                    None
                }
                _ => {
                    self.r.consume(CONTROL);
                    Some((buf >> (64 - CONTROL)) & 0x7ff)
                }
            }
        } else {
            match self.r.read_ones_prefix(2)? {
                0 => return Ok(()),
                1 => None,
                _ => Some(self.r.read_bits(11)?),
            }
        };
        // With `10` the previous window is reused. One that was never set
        // reads as leading = trailing = 0, as in Prometheus's iterator (its
        // re-opened appenders can write that).
        if let Some(hdr) = hdr {
            let leading = (hdr >> 6) as u8;
            let sig = match (hdr & 0x3f) as u8 {
                0 => 64,
                s => s,
            };
            if u32::from(leading) + u32::from(sig) > 64 {
                return Err(ChunkError::BadXorWindow { leading, sig });
            }
            self.leading = leading;
            self.trailing = 64 - leading - sig;
            self.window_seen = true;
        }
        // leading + trailing < 64 by construction, so 1..=64 bits.
        let sig = 64 - u32::from(self.leading) - u32::from(self.trailing);
        let bits = self.r.read_bits_wide(sig)?;
        self.v ^= bits << self.trailing;
        Ok(())
    }
}

/// Interprets an `n`-bit delta-of-delta field the way Prometheus does: raw
/// values above `2^(n-1)` are negative.
#[inline]
fn sign_extend(raw: u64, n: u32) -> i64 {
    if raw > 1 << (n - 1) {
        raw as i64 - (1i64 << n)
    } else {
        raw as i64
    }
}

impl Iterator for XorIterator<'_> {
    type Item = (i64, f64);

    #[inline]
    fn next(&mut self) -> Option<(i64, f64)> {
        if self.err.is_some() || self.read == self.total {
            return None;
        }
        match self.decode_next() {
            Ok(()) => {
                self.read += 1;
                Some((self.t, f64::from_bits(self.v)))
            }
            Err(e) => {
                self.err = Some(e);
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        if self.err.is_some() {
            return (0, Some(0));
        }
        (0, Some(usize::from(self.total - self.read)))
    }
}

impl std::iter::FusedIterator for XorIterator<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STALE_NAN: u64 = 0x7ff0_0000_0000_0002;

    /// A deliberately naive model of Prometheus's `bstream` + `xorAppender`:
    /// one bit or byte at a time, with Go's `count` bookkeeping (including the
    /// empty byte `writeByte` leaves behind). The fast encoder must produce
    /// exactly its bytes after every sample.
    struct GoModel {
        stream: Vec<u8>,
        count: u8,
        t: i64,
        v: u64,
        t_delta: u64,
        leading: u8,
        trailing: u8,
        num: u16,
    }

    impl GoModel {
        fn new() -> Self {
            GoModel {
                stream: vec![0, 0],
                count: 0,
                t: 0,
                v: 0,
                t_delta: 0,
                leading: 0xff,
                trailing: 0,
                num: 0,
            }
        }

        fn write_bit(&mut self, bit: bool) {
            if self.count == 0 {
                self.stream.push(0);
                self.count = 8;
            }
            let i = self.stream.len() - 1;
            if bit {
                self.stream[i] |= 1 << (self.count - 1);
            }
            self.count -= 1;
        }

        fn write_byte(&mut self, byt: u8) {
            if self.count == 0 {
                self.stream.push(0);
                self.count = 8;
            }
            let i = self.stream.len() - 1;
            self.stream[i] |= byt >> (8 - self.count);
            // Go: `byt << count` on a byte, which is 0 when count == 8.
            self.stream
                .push(((u16::from(byt) << self.count) & 0xff) as u8);
        }

        fn write_bits(&mut self, u: u64, nbits: u32) {
            let mut u = if nbits == 0 { 0 } else { u << (64 - nbits) };
            let mut n = nbits;
            while n >= 8 {
                self.write_byte((u >> 56) as u8);
                u <<= 8;
                n -= 8;
            }
            while n > 0 {
                self.write_bit(u >> 63 == 1);
                u <<= 1;
                n -= 1;
            }
        }

        fn append(&mut self, t: i64, v: f64) {
            let v = v.to_bits();
            let mut t_delta = 0;
            if self.num == 0 {
                let (b, n) = put_varint(t);
                for &x in &b[..n] {
                    self.write_byte(x);
                }
                self.write_bits(v, 64);
            } else if self.num == 1 {
                t_delta = t.wrapping_sub(self.t) as u64;
                let (b, n) = put_uvarint(t_delta);
                for &x in &b[..n] {
                    self.write_byte(x);
                }
                self.write_vdelta(v);
            } else {
                t_delta = t.wrapping_sub(self.t) as u64;
                let dod = t_delta.wrapping_sub(self.t_delta) as i64;
                if dod == 0 {
                    self.write_bit(false);
                } else if bit_range(dod, 14) {
                    self.write_bits(0b10, 2);
                    self.write_bits(dod as u64, 14);
                } else if bit_range(dod, 17) {
                    self.write_bits(0b110, 3);
                    self.write_bits(dod as u64, 17);
                } else if bit_range(dod, 20) {
                    self.write_bits(0b1110, 4);
                    self.write_bits(dod as u64, 20);
                } else {
                    self.write_bits(0b1111, 4);
                    self.write_bits(dod as u64, 64);
                }
                self.write_vdelta(v);
            }
            self.t = t;
            self.v = v;
            self.num += 1;
            self.stream[..2].copy_from_slice(&self.num.to_be_bytes());
            self.t_delta = t_delta;
        }

        fn write_vdelta(&mut self, v: u64) {
            let d = v ^ self.v;
            if d == 0 {
                self.write_bit(false);
                return;
            }
            self.write_bit(true);
            let leading = (d.leading_zeros() as u8).min(31);
            let trailing = d.trailing_zeros() as u8;
            if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
                self.write_bit(false);
                let n = 64 - u32::from(self.leading) - u32::from(self.trailing);
                self.write_bits(d >> self.trailing, n);
            } else {
                self.leading = leading;
                self.trailing = trailing;
                self.write_bit(true);
                self.write_bits(u64::from(leading), 5);
                let sig = 64 - u32::from(leading) - u32::from(trailing);
                self.write_bits(u64::from(sig), 6);
                self.write_bits(d >> trailing, sig);
            }
        }
    }

    fn encode(samples: &[(i64, f64)]) -> XorChunk {
        let mut c = XorChunk::new();
        for &(t, v) in samples {
            c.append(t, v);
        }
        c
    }

    fn decode(bytes: &[u8]) -> (Vec<(i64, u64)>, Option<ChunkError>) {
        let mut it = XorIterator::new(bytes);
        let got = it.by_ref().map(|(t, v)| (t, v.to_bits())).collect();
        (got, it.err().cloned())
    }

    fn bits_of(samples: &[(i64, f64)]) -> Vec<(i64, u64)> {
        samples.iter().map(|&(t, v)| (t, v.to_bits())).collect()
    }

    #[test]
    fn empty_chunk() {
        let c = XorChunk::new();
        assert_eq!(c.bytes(), &[0, 0]);
        assert_eq!(c.num_samples(), 0);
        assert_eq!(c.iter().count(), 0);
        assert!(c.iter().err().is_none());
        assert!(matches!(XorChunk::from_bytes(vec![0, 0]), Ok(c) if c.num_samples() == 0));
    }

    /// Bytes worked out by hand from Prometheus's xor.go / bstream.go.
    #[test]
    fn known_answer_time_and_windows() {
        let mut c = XorChunk::new();
        // varint(1000) zigzag = 2000 -> d0 0f; 1.0 = 3ff0...; Go leaves an
        // empty byte after the byte-aligned writes.
        c.append(1000, 1.0);
        let mut want = vec![0x00, 0x01, 0xd0, 0x0f, 0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0x00];
        assert_eq!(c.bytes(), want.as_slice());

        // uvarint(1000) = e8 07 fills the empty byte; same value = one 0 bit.
        c.append(2000, 1.0);
        want[1] = 2;
        want.truncate(12);
        want.extend_from_slice(&[0xe8, 0x07, 0x00]);
        assert_eq!(c.bytes(), want.as_slice());

        // dod 0 -> 0; 1.0^2.0 = 0x7ff0.. -> 1,1, leading 00001, sig 001011
        // (11), bits 11111111111. Stream: 0 0 11 00001 001011 11111111111.
        c.append(3000, 2.0);
        want[1] = 3;
        want.truncate(14);
        want.extend_from_slice(&[0x30, 0x97, 0xff, 0xc0]);
        assert_eq!(c.bytes(), want.as_slice());

        // dod 5 -> 10 00000000000101, same value -> 0.
        c.append(4005, 2.0);
        want[1] = 4;
        want.truncate(17);
        want.extend_from_slice(&[0xe0, 0x01, 0x40]);
        assert_eq!(c.bytes(), want.as_slice());

        let (got, err) = decode(c.bytes());
        assert!(err.is_none());
        assert_eq!(
            got,
            bits_of(&[(1000, 1.0), (2000, 1.0), (3000, 2.0), (4005, 2.0)])
        );
    }

    #[test]
    fn known_answer_leading_clamp_and_reuse() {
        // 0 ^ 1: 63 leading zeros clamp to 31, sig 33: 11 11111 100001 0^32 1.
        // Then 1 ^ 3 = 2 fits that window: dod 0, 10, 0^31 10.
        let c = encode(&[(0, 0.0), (1, f64::from_bits(1)), (2, f64::from_bits(3))]);
        let mut want = vec![0x00, 0x03, 0x00];
        want.extend_from_slice(&[0; 8]);
        want.push(0x01);
        want.extend_from_slice(&[0xff, 0x08, 0x00, 0x00, 0x00, 0x05, 0, 0, 0, 0, 0x80]);
        assert_eq!(c.bytes(), want.as_slice());
    }

    #[test]
    fn known_answer_sixty_four_sigbits() {
        // Both outer bits differ: leading = trailing = 0, sig 64 written as 0.
        let c = encode(&[(0, 0.0), (1, f64::from_bits(0x8000_0000_0000_0001))]);
        let mut want = vec![0x00, 0x02, 0x00];
        want.extend_from_slice(&[0; 8]);
        want.push(0x01);
        want.extend_from_slice(&[0xc0, 0x04, 0, 0, 0, 0, 0, 0, 0, 0x08]);
        assert_eq!(c.bytes(), want.as_slice());
        let (got, err) = decode(c.bytes());
        assert!(err.is_none());
        assert_eq!(got[1].1, 0x8000_0000_0000_0001);
    }

    #[test]
    fn negative_first_timestamp() {
        let c = encode(&[(-1, 0.5)]);
        assert_eq!(&c.bytes()[..3], &[0x00, 0x01, 0x01]);
        assert_eq!(decode(c.bytes()).0, bits_of(&[(-1, 0.5)]));
    }

    #[test]
    fn stale_marker_and_specials_round_trip() {
        let stale = f64::from_bits(STALE_NAN);
        let samples = [
            (10, 1.0),
            (20, stale),
            (30, f64::INFINITY),
            (40, f64::NEG_INFINITY),
            (50, stale),
            (60, f64::NAN),
            (70, -0.0),
            (80, 0.0),
        ];
        let c = encode(&samples);
        let (got, err) = decode(c.bytes());
        assert!(err.is_none());
        assert_eq!(got, bits_of(&samples));
    }

    #[test]
    fn bucket_boundaries() {
        // Delta-of-delta values at and around each bucket's edges.
        let mut dods = vec![0i64, 1, -1, i64::MAX / 4, i64::MIN / 4];
        for n in [14u32, 17, 20] {
            let half = 1i64 << (n - 1);
            dods.extend_from_slice(&[half, half + 1, -(half - 1), -half]);
        }
        let mut samples = vec![(0i64, 0.0), (1_000_000_000, 1.0)];
        let mut delta = 1_000_000_000i64;
        let mut t = 1_000_000_000i64;
        for (i, dod) in dods.into_iter().enumerate() {
            delta += dod;
            t = t.wrapping_add(delta);
            samples.push((t, i as f64));
            // Return to the base delta so deltas stay bounded.
            delta -= dod;
        }
        let c = encode(&samples);
        let mut model = GoModel::new();
        for &(t, v) in &samples {
            model.append(t, v);
        }
        assert_eq!(c.bytes(), model.stream.as_slice());
        assert_eq!(decode(c.bytes()).0, bits_of(&samples));
    }

    #[test]
    fn bit_range_matches_go() {
        assert!(bit_range(8192, 14));
        assert!(!bit_range(8193, 14));
        assert!(bit_range(-8191, 14));
        assert!(!bit_range(-8192, 14));
        assert_eq!(sign_extend(8192, 14), 8192);
        assert_eq!(sign_extend(8193, 14), -8191);
    }

    #[test]
    fn short_or_inconsistent_input_is_an_error() {
        for bytes in [&[][..], &[0], &[0, 5, 0x80], &[0xff; 40]] {
            let (_, err) = decode(bytes);
            assert!(err.is_some(), "{bytes:?}");
            assert!(XorChunk::from_bytes(bytes.to_vec()).is_err(), "{bytes:?}");
        }
        // A window with 31 leading zeros and 40 significant bits.
        let mut bytes = encode(&[(0, 0.0)]).bytes().to_vec();
        bytes[1] = 2;
        bytes.pop();
        bytes.extend_from_slice(&[0x01, 0b1111_1111, 0b0100_0000, 0, 0, 0, 0, 0, 0]);
        assert!(matches!(
            decode(&bytes).1,
            Some(ChunkError::BadXorWindow {
                leading: 31,
                sig: 40
            })
        ));
    }

    /// Go's empty trailing byte can also appear mid-chunk, when a sample ends
    /// on a byte boundary with a whole-byte value write. Make sure that case
    /// is actually hit (random data alone makes it rare) and matches.
    #[test]
    fn mid_chunk_trailing_byte_matches_go_model() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut hits = 0;
        for _ in 0..200 {
            let mut c = XorChunk::new();
            let mut model = GoModel::new();
            let mut t = 0i64;
            for _ in 0..120 {
                t += 15_000 + (next() % 7) as i64;
                // Values whose XOR windows often span whole bytes.
                let v = f64::from_bits(next() & 0x00ff_ff00_0000_0000 | 0x4000_0000_0000_0000);
                c.append(t, v);
                model.append(t, v);
                assert_eq!(c.bytes(), model.stream.as_slice());
                if model.num > 1 && model.count == 8 {
                    hits += 1;
                }
            }
        }
        assert!(hits > 0, "trailing-byte case never exercised");
    }

    #[test]
    fn from_bytes_rejects_slack() {
        let mut bytes = encode(&[(1, 1.0), (2, 2.0)]).bytes().to_vec();
        bytes.extend_from_slice(&[0, 0]);
        assert!(matches!(
            XorChunk::from_bytes(bytes),
            Err(ChunkError::TrailingData(_))
        ));
    }

    #[test]
    fn shrink_and_heap_bytes() {
        let mut c = encode(&[(1, 1.0), (2, 2.0)]);
        assert!(c.heap_bytes() >= 128);
        c.shrink_to_fit();
        assert_eq!(c.heap_bytes(), c.bytes().len());
    }

    /// Realistic scrape timestamps, then arbitrary increasing ones (huge and
    /// negative deltas included) so every delta-of-delta bucket shows up.
    fn timestamps() -> impl Strategy<Value = Vec<i64>> {
        let scrape = (
            -2_000_000_000_000i64..2_000_000_000_000,
            prop::collection::vec((1i64..60_000, -50i64..50), 1..300),
        )
            .prop_map(|(start, steps)| {
                let mut t = start;
                let mut out = Vec::with_capacity(steps.len());
                for (interval, jitter) in steps {
                    t += (interval + jitter).max(1);
                    out.push(t);
                }
                out
            });
        let constant = (any::<i32>(), 1i64..100_000, 1usize..200)
            .prop_map(|(s, step, n)| (0..n as i64).map(|i| i64::from(s) + i * step).collect());
        let arbitrary =
            prop::collection::btree_set(any::<i64>(), 1..200).prop_map(|s| s.into_iter().collect());
        let mixed = prop::collection::btree_set(
            prop_oneof![
                -(1i64 << 40)..(1i64 << 40),
                -100_000i64..100_000,
                any::<i64>()
            ],
            1..200,
        )
        .prop_map(|s| s.into_iter().collect());
        prop_oneof![scrape, constant, arbitrary, mixed]
    }

    /// Value bit patterns: specials, repeats (zero XOR), near neighbours
    /// (small windows) and arbitrary bits (arbitrary NaN payloads included).
    fn values(n: usize) -> impl Strategy<Value = Vec<f64>> {
        let one = prop_oneof![
            Just(f64::from_bits(STALE_NAN)),
            Just(f64::NAN),
            Just(f64::INFINITY),
            Just(f64::NEG_INFINITY),
            Just(0.0),
            Just(-0.0),
            (0u32..1000).prop_map(f64::from),
            any::<f64>(),
            any::<u64>().prop_map(f64::from_bits),
            (0x7ff0_0000_0000_0001u64..=0x7fff_ffff_ffff_ffff).prop_map(f64::from_bits),
        ];
        prop::collection::vec((one, 0u8..4), n).prop_map(|vs| {
            let mut prev = 0.0f64;
            vs.into_iter()
                .map(|(v, mode)| {
                    prev = match mode {
                        0 => prev,
                        1 => prev + 1.0,
                        _ => v,
                    };
                    prev
                })
                .collect()
        })
    }

    fn samples() -> impl Strategy<Value = Vec<(i64, f64)>> {
        timestamps().prop_flat_map(|ts| {
            let n = ts.len();
            values(n).prop_map(move |vs| ts.iter().copied().zip(vs).collect::<Vec<_>>())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn round_trip_and_matches_go_model(samples in samples()) {
            let mut c = XorChunk::new();
            let mut model = GoModel::new();
            for &(t, v) in &samples {
                c.append(t, v);
                model.append(t, v);
                prop_assert_eq!(c.bytes(), model.stream.as_slice());
            }
            prop_assert_eq!(c.num_samples(), samples.len());
            let (got, err) = decode(c.bytes());
            prop_assert!(err.is_none());
            prop_assert_eq!(got, bits_of(&samples));
        }

        #[test]
        fn draining_the_stream_keeps_the_bytes(samples in samples(), every in 1usize..40, min in 0usize..64) {
            let full = encode(&samples);
            let mut c = XorChunk::new();
            let mut drained: Vec<u8> = Vec::new();
            for (i, &(t, v)) in samples.iter().enumerate() {
                c.append(t, v);
                if i % every == 0 && c.finished_stream_len() >= min {
                    let n = c.finished_stream_len();
                    c.drain_stream(n, |b| { drained.extend_from_slice(b); Ok::<(), ()>(()) }).unwrap();
                }
                if every == 1 && min == 0 {
                    // Drained after every sample: only the unfinished last byte
                    // stays behind the header.
                    prop_assert!(c.bytes().len() <= HEADER_LEN + 1);
                }
            }
            let mut whole = c.bytes()[..HEADER_LEN].to_vec();
            whole.extend_from_slice(&drained);
            whole.extend_from_slice(&c.bytes()[HEADER_LEN..]);
            prop_assert_eq!(whole.as_slice(), full.bytes());
        }

        #[test]
        fn reopen_continues_identically(samples in samples(), split in any::<prop::sample::Index>()) {
            let at = split.index(samples.len() + 1);
            let full = encode(&samples);
            let mut reopened = XorChunk::from_bytes(encode(&samples[..at]).bytes().to_vec())
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            for &(t, v) in &samples[at..] {
                reopened.append(t, v);
            }
            prop_assert_eq!(reopened.bytes(), full.bytes());
        }

        #[test]
        fn reopen_clears_padding_garbage(samples in samples(), junk in any::<u8>()) {
            // Unused low bits of the last byte are not part of the stream; a
            // re-opened chunk must not OR new bits into stale ones.
            let c = encode(&samples[..samples.len() - 1]);
            let mut bytes = c.bytes().to_vec();
            let slack = (bytes.len() - 2) * 8 - {
                let mut it = XorIterator::new(&bytes);
                for _ in it.by_ref() {}
                it.r.bit_position()
            };
            if slack > 0
                && slack < 8
                && let Some(last) = bytes.last_mut()
            {
                *last |= junk & ((1u8 << slack) - 1);
            }
            let mut reopened = XorChunk::from_bytes(bytes)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            if let Some(&(t, v)) = samples.last() {
                reopened.append(t, v);
            }
            let full = encode(&samples);
            prop_assert_eq!(reopened.bytes(), full.bytes());
        }

        #[test]
        fn truncated_chunks_stop_with_error(samples in samples(), cut in any::<prop::sample::Index>()) {
            let c = encode(&samples);
            let bytes = c.bytes();
            let keep = cut.index(bytes.len());
            let (got, err) = decode(&bytes[..keep]);
            // Whatever was decoded is a prefix of the real samples.
            prop_assert!(got.len() <= samples.len());
            prop_assert_eq!(&got[..], &bits_of(&samples)[..got.len()]);
            if got.len() < samples.len() {
                prop_assert!(err.is_some());
            }
            let _ = XorChunk::from_bytes(bytes[..keep].to_vec());
        }

        #[test]
        fn bit_flips_never_panic(samples in samples(), flips in prop::collection::vec(any::<prop::sample::Index>(), 1..4)) {
            let mut bytes = encode(&samples).bytes().to_vec();
            let nbits = bytes.len() * 8;
            for f in flips {
                let bit = f.index(nbits);
                bytes[bit / 8] ^= 0x80 >> (bit % 8);
            }
            let (got, _) = decode(&bytes);
            prop_assert!(got.len() <= usize::from(header_count(&bytes).unwrap_or(0)));
            let _ = XorChunk::from_bytes(bytes);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
            let mut it = XorIterator::new(&bytes);
            let n = it.by_ref().count();
            prop_assert!(n <= usize::from(header_count(&bytes).unwrap_or(0)));
            if let Ok(mut c) = XorChunk::from_bytes(bytes) {
                // A chunk that decoded cleanly must keep decoding after appends.
                let before: Vec<_> = c.iter().map(|(t, v)| (t, v.to_bits())).collect();
                if c.num_samples() < usize::from(u16::MAX) {
                    let t = before.last().map_or(0, |s| s.0.wrapping_add(15_000));
                    c.append(t, 42.0);
                    let (after, err) = decode(c.bytes());
                    prop_assert!(err.is_none());
                    prop_assert_eq!(&after[..before.len()], &before[..]);
                    prop_assert_eq!(after.last().copied(), Some((t, 42.0f64.to_bits())));
                }
            }
        }
    }
}
