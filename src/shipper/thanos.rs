//! The `thanos` section of an uploaded block's meta.json, as Thanos defines it
//! (`pkg/block/metadata/meta.go`): external labels, downsampling resolution, upload
//! source and the block's files with their sizes.
//!
//! As the Thanos sidecar does, ODIN adds the section only to the copy of meta.json
//! that goes to the bucket; the local meta.json stays as Prometheus writes it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::shipper::error::{Result, ShipperError};
use crate::tsdb::block::BlockMeta;

/// The `source` ODIN writes. Thanos accepts any string; `sidecar` is what the Thanos
/// component in ODIN's place writes, so tools that look at it (the bucket web UI,
/// `thanos tools bucket inspect`) treat ODIN's blocks as they treat Prometheus's.
pub const SOURCE: &str = "sidecar";

/// `thanos` in meta.json.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ThanosMeta {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub version: u32,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub downsample: Downsample,
    #[serde(default)]
    pub source: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub segment_files: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ThanosFile>,
}

fn is_zero(v: &u32) -> bool {
    *v == 0
}

fn is_zero_i64(v: &i64) -> bool {
    *v == 0
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Downsample {
    #[serde(default)]
    pub resolution: i64,
}

/// One file of the block, relative to its directory; meta.json itself has no size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ThanosFile {
    pub rel_path: String,
    #[serde(default, skip_serializing_if = "is_zero_i64")]
    pub size_bytes: i64,
}

/// The files of a block that go to the bucket, sorted by relative path as Thanos
/// sorts them: `chunks/…`, `index`, and `meta.json` (no size). Tombstones stay
/// local, as with Thanos.
pub fn block_files(dir: &Path) -> Result<Vec<ThanosFile>> {
    let mut files = Vec::new();
    let chunks = dir.join("chunks");
    let rd = std::fs::read_dir(&chunks)
        .map_err(|e| ShipperError::io(format!("read {}", chunks.display()), e))?;
    for e in rd {
        let e = e.map_err(|e| ShipperError::io(format!("read {}", chunks.display()), e))?;
        let md = e
            .metadata()
            .map_err(|err| ShipperError::io(format!("stat {}", e.path().display()), err))?;
        if md.is_file() {
            files.push(ThanosFile {
                rel_path: format!("chunks/{}", e.file_name().to_string_lossy()),
                size_bytes: md.len() as i64,
            });
        }
    }
    let index = dir.join("index");
    let md = std::fs::metadata(&index)
        .map_err(|e| ShipperError::io(format!("stat {}", index.display()), e))?;
    files.push(ThanosFile {
        rel_path: "index".into(),
        size_bytes: md.len() as i64,
    });
    files.push(ThanosFile {
        rel_path: "meta.json".into(),
        size_bytes: 0,
    });
    files.sort_by(|a, b| a.rel_path.cmp(&b.rel_path));
    Ok(files)
}

/// The section for a block uploaded with these external labels.
pub fn thanos_section(labels: &BTreeMap<String, String>, files: Vec<ThanosFile>) -> ThanosMeta {
    let segment_files = files
        .iter()
        .filter_map(|f| f.rel_path.strip_prefix("chunks/").map(str::to_string))
        .collect();
    ThanosMeta {
        version: 1,
        labels: labels.clone(),
        downsample: Downsample { resolution: 0 },
        source: SOURCE.into(),
        segment_files,
        files,
    }
}

/// `meta` with the `thanos` section set (replacing one already there).
pub fn with_thanos(meta: &BlockMeta, thanos: &ThanosMeta) -> Result<BlockMeta> {
    let mut m = meta.clone();
    let v = serde_json::to_value(thanos)
        .map_err(|e| ShipperError::Corrupt(format!("encode thanos meta: {e}")))?;
    m.extra.insert("thanos".into(), v);
    Ok(m)
}

/// The `thanos` section of a meta read from the bucket, if it has one.
pub fn thanos_of(meta: &BlockMeta) -> Option<ThanosMeta> {
    meta.extra
        .get("thanos")
        .and_then(|v| serde_json::from_value(v.clone()).ok())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::tsdb::block::meta::encode_meta;

    #[test]
    fn meta_json_carries_the_thanos_section() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("chunks")).unwrap();
        std::fs::write(dir.path().join("chunks/000002"), b"xx").unwrap();
        std::fs::write(dir.path().join("chunks/000001"), b"xxx").unwrap();
        std::fs::write(dir.path().join("index"), b"iiii").unwrap();
        std::fs::write(dir.path().join("tombstones"), b"t").unwrap();
        let files = block_files(dir.path()).unwrap();
        let labels = BTreeMap::from([("cluster".to_string(), "a".to_string())]);
        let id = ulid::Ulid::from_string("01H8XGJWBWBA1RCK2ZQFWTR3ZR").unwrap();
        let meta = BlockMeta::new(id, 0, 7_200_000, 1, vec![id], Vec::new());
        let m = with_thanos(&meta, &thanos_section(&labels, files)).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&encode_meta(&m).unwrap()).unwrap();
        assert_eq!(
            v["thanos"],
            serde_json::json!({
                "version": 1,
                "labels": {"cluster": "a"},
                "downsample": {"resolution": 0},
                "source": "sidecar",
                "segment_files": ["000001", "000002"],
                "files": [
                    {"rel_path": "chunks/000001", "size_bytes": 3},
                    {"rel_path": "chunks/000002", "size_bytes": 2},
                    {"rel_path": "index", "size_bytes": 4},
                    {"rel_path": "meta.json"}
                ]
            })
        );
        assert_eq!(v["ulid"], "01H8XGJWBWBA1RCK2ZQFWTR3ZR");
        let back = thanos_of(&m).unwrap();
        assert_eq!(back.labels["cluster"], "a");
        assert_eq!(back.files.len(), 4);
    }
}
