//! Chunk encodings for sample data, bit-compatible with Prometheus's
//! `tsdb/chunkenc` so blocks written by either side can be read by the other.
//!
//! Only the float XOR encoding is implemented (Prometheus encoding byte 1).

mod bstream;
mod xor;

pub use xor::{XorChunk, XorIterator};

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
