//! Prometheus remote protocols: the remote-write 1.0 receiver (protobuf + snappy) and
//! remote read (sampled and streamed XOR chunks). They use only the `storage` seams.

pub mod decode;
pub mod prompb;
pub mod read;
mod write;

pub use write::{
    WriteError, WriteLimits, WriteOutcome, decode_write_request, decompress_into, write_decoded,
};
