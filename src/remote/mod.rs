//! Prometheus remote protocols: the remote-write 1.0 receiver (protobuf + snappy).
//! It writes only through the `storage` seam.

pub mod prompb;
mod write;

pub use write::{
    WriteError, WriteLimits, WriteOutcome, decode_write_request, is_valid_label_name, to_appends,
};
