//! Chunk encodings for sample data, bit-compatible with Prometheus's
//! `tsdb/chunkenc` so blocks written by either side can be read by the other.
//!
//! Only the float XOR encoding is implemented (Prometheus encoding byte 1).

mod bstream;
mod xor;

pub use xor::{HEADER_LEN, XorChunk, XorIterator, XorState};

use crate::model::Sample;

/// Encodes time-ordered samples into XOR chunks of at most `per_chunk` samples each,
/// returned as `(min_t, max_t, chunk)`: how rewritten data (deletions, merged
/// overlapping blocks) is cut again.
pub fn encode_chunks(samples: &[Sample], per_chunk: usize) -> Vec<(i64, i64, XorChunk)> {
    samples
        .chunks(per_chunk.max(1))
        .filter_map(|part| {
            let (first, last) = (part.first()?, part.last()?);
            let mut c = XorChunk::new();
            for s in part {
                c.append(s.t, s.v);
            }
            Some((first.t, last.t, c))
        })
        .collect()
}

/// The on-disk encoding byte of an XOR chunk (Prometheus `EncXOR`).
pub const ENCODING_XOR: u8 = 1;

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// The data ends before the samples its header announces.
    #[error("chunk data truncated")]
    Truncated,
    /// The chunk's encoding byte names an encoding we cannot decode.
    #[error("unsupported chunk encoding {0}")]
    BadEncoding(u8),
    /// A varint runs past 64 bits.
    #[error("varint overflows 64 bits")]
    VarintOverflow,
    /// An XOR value header whose zero-window does not fit in 64 bits.
    #[error("invalid xor value window: {leading} leading zeros and {sig} significant bits")]
    BadXorWindow { leading: u8, sig: u8 },
    /// More than a byte of data follows the last sample.
    #[error("{0} bits of trailing data after the last sample")]
    TrailingData(usize),
}
