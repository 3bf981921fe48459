//! The TSDB as a replicated state machine: its head images are the cluster's Raft
//! snapshots, and a forwarded write's answer travels as bytes.

use std::io;
use std::path::PathBuf;

use crate::log::LogIndex;
use crate::replication::machine::Replicated;
use crate::storage::AppendSummary;
use crate::tsdb::head::image::image_name;
use crate::tsdb::machine::{DbEntry, DbMachine};

/// A head image this node keeps durable (`chunks_head/snapshot.<index>`; in a
/// cluster, images are named by their Raft index).
#[derive(Debug, Clone)]
pub struct DbImage {
    pub path: PathBuf,
}

/// Not built yet: sending the TSDB's state to a replica that lags behind the log's
/// start. Such a replica stays behind (the leader retries, and logs why); the log
/// keeps `cluster.log_entries_kept` entries behind the newest image for it.
fn transfer_not_built() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "sending the TSDB's state as a Raft snapshot is not built yet: a replica that \
         lags behind the start of the leader's log cannot catch up",
    )
}

impl Replicated for DbMachine {
    type Image = DbImage;

    fn durable_image(&self, index: LogIndex) -> io::Result<DbImage> {
        let dir = self.images_dir.as_ref().ok_or_else(|| {
            io::Error::other("this database keeps no head images (no chunk directory)")
        })?;
        let path = dir.join(image_name(index));
        if !path.exists() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no head image {}", path.display()),
            ));
        }
        Ok(DbImage { path })
    }

    fn restore(&self, _index: LogIndex, _image: &DbImage) -> io::Result<()> {
        Err(transfer_not_built())
    }

    fn encode_image(_image: &DbImage) -> io::Result<Vec<u8>> {
        Err(transfer_not_built())
    }

    fn decode_image(_bytes: &[u8]) -> io::Result<DbImage> {
        Err(transfer_not_built())
    }

    /// Six little-endian u64 counters.
    fn encode_output(s: &AppendSummary) -> Vec<u8> {
        [
            s.accepted,
            s.unchanged,
            s.out_of_order,
            s.out_of_bounds,
            s.duplicate,
            s.too_far_in_future,
        ]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect()
    }

    fn decode_output(bytes: &[u8]) -> io::Result<AppendSummary> {
        let field = |i: usize| -> io::Result<u64> {
            let b = bytes
                .get(i * 8..i * 8 + 8)
                .ok_or_else(|| io::Error::other("an append summary is 48 bytes"))?;
            Ok(u64::from_le_bytes(b.try_into().unwrap_or_default()))
        };
        if bytes.len() != 48 {
            return Err(io::Error::other("an append summary is 48 bytes"));
        }
        Ok(AppendSummary {
            accepted: field(0)?,
            unchanged: field(1)?,
            out_of_order: field(2)?,
            out_of_bounds: field(3)?,
            duplicate: field(4)?,
            too_far_in_future: field(5)?,
        })
    }

    /// Head cuts are the leader's maintenance's own; writes and deletions come from
    /// clients of any node.
    fn may_forward(entry: &DbEntry) -> bool {
        !matches!(entry, DbEntry::HeadCut(_))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_append_summary_round_trips_and_short_bytes_are_refused() {
        let s = AppendSummary {
            accepted: 1,
            unchanged: 2,
            out_of_order: 3,
            out_of_bounds: 4,
            duplicate: 5,
            too_far_in_future: 6,
        };
        let bytes = DbMachine::encode_output(&s);
        assert_eq!(DbMachine::decode_output(&bytes).unwrap(), s);
        assert!(DbMachine::decode_output(&bytes[..47]).is_err());
        assert!(DbMachine::decode_output(&[]).is_err());
    }
}
