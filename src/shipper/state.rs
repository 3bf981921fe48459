//! The shipper's persistent state: `<data dir>/thanos.shipper.json`, the file and
//! shape the Thanos sidecar keeps (`{"version": 1, "uploaded": [ULID, …]}`).
//!
//! `uploaded` holds the ULIDs of the blocks uploaded and, for a block uploaded after
//! local compaction, the level-1 blocks it was made from, so that a block compacted
//! later from shipped blocks is known to be in the bucket already. Entries that no
//! local block refers to any more are dropped on write, which keeps the file small.
//! Written atomically: temporary file, fsync, rename, directory fsync.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use crate::shipper::error::{Result, ShipperError};

pub const STATE_FILENAME: &str = "thanos.shipper.json";
const STATE_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShipperState {
    pub uploaded: BTreeSet<Ulid>,
    /// The log segments uploaded (window segments; a merged one has shipped when
    /// all of its sources have). ODIN's own key; Thanos has no logs.
    pub log_segments: BTreeSet<Ulid>,
}

#[derive(Serialize, Deserialize)]
struct StateFile {
    version: u32,
    /// Go writes an empty list as `null`.
    #[serde(default)]
    uploaded: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    log_segments: Option<Vec<String>>,
}

pub fn state_path(data_dir: &Path) -> PathBuf {
    data_dir.join(STATE_FILENAME)
}

impl ShipperState {
    /// Reads the state; a missing file is an empty state. A file that does not parse
    /// is an error: starting over would upload every local block again.
    pub fn load(data_dir: &Path) -> Result<Self> {
        let path = state_path(data_dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(ShipperError::io(format!("read {}", path.display()), e)),
        };
        let f: StateFile = serde_json::from_slice(&bytes)
            .map_err(|e| ShipperError::Corrupt(format!("parse {}: {e}", path.display())))?;
        if f.version != STATE_VERSION {
            return Err(ShipperError::Corrupt(format!(
                "{}: unexpected version {}",
                path.display(),
                f.version
            )));
        }
        let parse = |list: &Option<Vec<String>>| -> Result<BTreeSet<Ulid>> {
            list.iter()
                .flatten()
                .map(|s| {
                    Ulid::from_string(s).map_err(|e| {
                        ShipperError::Corrupt(format!(
                            "{}: invalid ulid {s:?}: {e}",
                            path.display()
                        ))
                    })
                })
                .collect()
        };
        Ok(Self {
            uploaded: parse(&f.uploaded)?,
            log_segments: parse(&f.log_segments)?,
        })
    }

    /// Writes the state atomically.
    pub fn save(&self, data_dir: &Path) -> Result<()> {
        let path = state_path(data_dir);
        let tmp = data_dir.join(format!("{STATE_FILENAME}.tmp"));
        let f = StateFile {
            version: STATE_VERSION,
            uploaded: Some(self.uploaded.iter().map(Ulid::to_string).collect()),
            log_segments: (!self.log_segments.is_empty())
                .then(|| self.log_segments.iter().map(Ulid::to_string).collect()),
        };
        let data = serde_json::to_vec_pretty(&f)
            .map_err(|e| ShipperError::Corrupt(format!("encode shipper state: {e}")))?;
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&data)?;
            file.sync_all()?;
            drop(file);
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(data_dir)?.sync_all()
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            ShipperError::io(format!("write {}", path.display()), e)
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_in_thanos_shape() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            ShipperState::load(dir.path()).unwrap(),
            ShipperState::default()
        );
        let mut s = ShipperState::default();
        s.uploaded
            .insert(Ulid::from_string("01H8XGJWBWBA1RCK2ZQFWTR3ZR").unwrap());
        s.uploaded
            .insert(Ulid::from_string("01H8XGJWBWBA1RCK2ZQFWTR400").unwrap());
        s.save(dir.path()).unwrap();
        assert!(!dir.path().join("thanos.shipper.json.tmp").exists());
        assert_eq!(ShipperState::load(dir.path()).unwrap(), s);
        // Log segments add ODIN's own key, which the sidecar's reader ignores.
        s.log_segments
            .insert(Ulid::from_string("01H8XGJWBWBA1RCK2ZQFWTR401").unwrap());
        s.save(dir.path()).unwrap();
        assert_eq!(ShipperState::load(dir.path()).unwrap(), s);
        s.log_segments.clear();
        s.save(dir.path()).unwrap();
        assert_eq!(ShipperState::load(dir.path()).unwrap(), s);
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(state_path(dir.path())).unwrap()).unwrap();
        assert_eq!(
            raw,
            serde_json::json!({"version": 1, "uploaded": ["01H8XGJWBWBA1RCK2ZQFWTR3ZR", "01H8XGJWBWBA1RCK2ZQFWTR400"]})
        );
    }

    #[test]
    fn reads_the_sidecar_file_and_refuses_garbage() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            state_path(dir.path()),
            "{\n\t\"version\": 1,\n\t\"uploaded\": null\n}",
        )
        .unwrap();
        assert!(ShipperState::load(dir.path()).unwrap().uploaded.is_empty());
        std::fs::write(state_path(dir.path()), "{").unwrap();
        assert!(ShipperState::load(dir.path()).is_err());
        std::fs::write(state_path(dir.path()), r#"{"version": 2, "uploaded": []}"#).unwrap();
        assert!(ShipperState::load(dir.path()).is_err());
    }
}
