//! Prometheus remote protocols: the remote-write 1.0 receiver (protobuf + snappy).
//! It writes only through the `storage` seam.

pub mod decode;
pub mod prompb;
mod write;

pub use write::{
    WriteError, WriteLimits, WriteOutcome, decode_write_request, decompress_into, write_decoded,
};
