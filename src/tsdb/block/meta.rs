//! `meta.json`: a block's identity, time range, statistics and compaction history,
//! in the JSON shape Prometheus writes (camelCase keys, ULIDs as strings, zero
//! statistics and empty lists omitted, tab-indented).
//!
//! Fields we do not model (for example the `thanos` section that Thanos adds) are
//! kept in [`BlockMeta::extra`] and written back unchanged, so that rewriting the
//! meta of a block uploaded by another tool does not lose its annotations.

use std::fs;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use ulid::Ulid;

use super::{BlockError, fsync_dir};

pub const META_FILENAME: &str = "meta.json";
/// The only meta.json version Prometheus defines.
pub const META_VERSION_1: u32 = 1;

fn is_zero(v: &u64) -> bool {
    *v == 0
}

fn is_false(v: &bool) -> bool {
    !*v
}

/// ULIDs as their 26-character string, without needing the `ulid/serde` feature.
mod ulid_str {
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(u: &Ulid, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&u.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Ulid, D::Error> {
        let s = String::deserialize(d)?;
        Ulid::from_string(&s)
            .map_err(|e| serde::de::Error::custom(format!("invalid ulid {s:?}: {e}")))
    }
}

mod ulid_vec {
    use serde::ser::SerializeSeq;
    use serde::{Deserialize, Deserializer, Serializer};
    use ulid::Ulid;

    pub fn serialize<S: Serializer>(v: &[Ulid], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(v.len()))?;
        for u in v {
            seq.serialize_element(&u.to_string())?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Ulid>, D::Error> {
        let v = Option::<Vec<String>>::deserialize(d)?.unwrap_or_default();
        v.iter()
            .map(|s| {
                Ulid::from_string(s)
                    .map_err(|e| serde::de::Error::custom(format!("invalid ulid {s:?}: {e}")))
            })
            .collect()
    }
}

/// Counts over the block's contents.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlockStats {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_samples: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_series: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_chunks: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub num_tombstones: u64,
}

/// A parent block: its ULID and time range.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct BlockDesc {
    #[serde(with = "ulid_str")]
    pub ulid: Ulid,
    pub min_time: i64,
    pub max_time: i64,
}

/// How the block came to be.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Compaction {
    /// 1 for a block cut from the head, +1 for every compaction above that.
    #[serde(default)]
    pub level: u32,
    /// ULIDs of all level-1 blocks whose data went into this one.
    #[serde(default, with = "ulid_vec", skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<Ulid>,
    /// Compaction produced no samples; the block should be removed on reload.
    #[serde(default, skip_serializing_if = "is_false")]
    pub deletable: bool,
    /// The blocks directly compacted into this one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parents: Vec<BlockDesc>,
    /// A compaction involving this block failed (Prometheus then avoids it).
    #[serde(default, skip_serializing_if = "is_false")]
    pub failed: bool,
    /// Free-form hints newer Prometheus versions write (e.g. "from-out-of-order").
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
}

/// Contents of `meta.json`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BlockMeta {
    #[serde(with = "ulid_str")]
    pub ulid: Ulid,
    /// First timestamp covered, inclusive (ms).
    pub min_time: i64,
    /// End of the covered range, exclusive (ms).
    pub max_time: i64,
    #[serde(default)]
    pub stats: BlockStats,
    #[serde(default)]
    pub compaction: Compaction,
    /// Meta format version; always 1.
    pub version: u32,
    /// Fields ODIN does not model, preserved verbatim.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl BlockMeta {
    /// Meta for a block covering `[min_time, max_time)` at compaction `level`, made
    /// from the level-1 `sources` (a fresh head block is its own single source) and
    /// the direct `parents` given as `(ulid, min_time, max_time)`. Statistics start
    /// at zero; [`write_block`](super::write_block) fills them in.
    pub fn new(
        ulid: Ulid,
        min_time: i64,
        max_time: i64,
        level: u32,
        sources: Vec<Ulid>,
        parents: Vec<(Ulid, i64, i64)>,
    ) -> Self {
        BlockMeta {
            ulid,
            min_time,
            max_time,
            stats: BlockStats::default(),
            compaction: Compaction {
                level,
                sources,
                parents: parents
                    .into_iter()
                    .map(|(ulid, min_time, max_time)| BlockDesc {
                        ulid,
                        min_time,
                        max_time,
                    })
                    .collect(),
                ..Compaction::default()
            },
            version: META_VERSION_1,
            extra: serde_json::Map::new(),
        }
    }
}

/// Reads and checks `dir/meta.json`.
pub fn read_meta(dir: &Path) -> Result<BlockMeta, BlockError> {
    let path = dir.join(META_FILENAME);
    let b = fs::read(&path).map_err(|e| BlockError::io(format!("read {}", path.display()), e))?;
    let meta: BlockMeta = serde_json::from_slice(&b)
        .map_err(|e| BlockError::Meta(format!("parse {}: {e}", path.display())))?;
    validate_meta(&meta, dir)
        .map_err(|why| BlockError::Meta(format!("{}: {why}", path.display())))?;
    Ok(meta)
}

/// The highest compaction level believed. Prometheus's ten block ranges (and
/// Thanos's compactor) stay far below it; a larger one is a damaged file.
pub const MAX_COMPACTION_LEVEL: u32 = 100;

/// The widest time range a block may claim: ten years. Prometheus's planner builds
/// ten ranges, each three times the last; from 2 h the widest is 2 h × 3^9, about
/// 4.5 years, and Thanos's compactor stops at two weeks. A wider range (say
/// `maxTime = i64::MAX`) is damage, and believing it would make the head refuse
/// every write.
pub const MAX_BLOCK_SPAN_MS: i64 = 10 * 366 * 86_400_000;

/// Checks what a meta.json claims before any of it is trusted: the version, the
/// ULID against the directory's name, a non-empty time range no wider than
/// [`MAX_BLOCK_SPAN_MS`], a plausible
/// compaction level, and statistics that can be true (every series has a chunk,
/// every chunk a sample). Returns why not.
pub fn validate_meta(meta: &BlockMeta, dir: &Path) -> Result<(), String> {
    if meta.version != META_VERSION_1 {
        return Err(format!("unexpected meta file version {}", meta.version));
    }
    // Only a ULID-named directory is held to its name: a block being written
    // lives under `<ULID>.tmp-for-creation`, a snapshot copy may be renamed.
    let name = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if let Ok(named) = Ulid::from_string(name) {
        if named != meta.ulid {
            return Err(format!(
                "ulid {} does not match the directory {name}",
                meta.ulid
            ));
        }
    }
    if meta.min_time >= meta.max_time {
        return Err(format!(
            "minTime {} is not before maxTime {}",
            meta.min_time, meta.max_time
        ));
    }
    match meta.max_time.checked_sub(meta.min_time) {
        Some(span) if span <= MAX_BLOCK_SPAN_MS => {}
        _ => {
            return Err(format!(
                "time range {}..{} is wider than any block ({MAX_BLOCK_SPAN_MS} ms)",
                meta.min_time, meta.max_time
            ));
        }
    }
    let level = meta.compaction.level;
    if level == 0 || level > MAX_COMPACTION_LEVEL {
        return Err(format!(
            "compaction level {level} outside 1..={MAX_COMPACTION_LEVEL}"
        ));
    }
    let st = &meta.stats;
    if st.num_chunks < st.num_series || st.num_samples < st.num_chunks {
        return Err(format!(
            "impossible stats: {} series, {} chunks, {} samples",
            st.num_series, st.num_chunks, st.num_samples
        ));
    }
    Ok(())
}

/// Encodes a meta as Prometheus does (`json.MarshalIndent` with a tab).
pub fn encode_meta(meta: &BlockMeta) -> Result<Vec<u8>, BlockError> {
    let mut out = Vec::with_capacity(512);
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
    meta.serialize(&mut ser)
        .map_err(|e| BlockError::Meta(format!("encode meta of block {}: {e}", meta.ulid)))?;
    Ok(out)
}

/// Writes `dir/meta.json` atomically: temporary file, fsync, rename, directory fsync.
/// The version is always written as 1.
pub fn write_meta(dir: &Path, meta: &BlockMeta) -> Result<(), BlockError> {
    let mut meta = meta.clone();
    meta.version = META_VERSION_1;
    let data = encode_meta(&meta)?;
    let path = dir.join(META_FILENAME);
    let tmp = dir.join(format!("{META_FILENAME}.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(BlockError::io(format!("write {}", path.display()), e));
    }
    fsync_dir(dir)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const PROMETHEUS_META: &str = r#"{
	"ulid": "01H8XGJWBWBA1RCK2ZQFWTR3ZR",
	"minTime": 1692000000000,
	"maxTime": 1692007200000,
	"stats": {
		"numSamples": 1200,
		"numSeries": 10,
		"numChunks": 10
	},
	"compaction": {
		"level": 2,
		"sources": [
			"01H8XGJWBWBA1RCK2ZQFWTR3ZR",
			"01H8XGJWBWBA1RCK2ZQFWTR400"
		],
		"parents": [
			{
				"ulid": "01H8XGJWBWBA1RCK2ZQFWTR400",
				"minTime": 1692000000000,
				"maxTime": 1692003600000
			}
		]
	},
	"version": 1,
	"thanos": {
		"labels": {"replica": "a"},
		"downsample": {"resolution": 0},
		"source": "sidecar"
	}
}"#;

    #[test]
    fn round_trip_preserves_unknown_fields() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(META_FILENAME), PROMETHEUS_META).unwrap();
        let meta = read_meta(dir.path()).unwrap();
        assert_eq!(meta.ulid.to_string(), "01H8XGJWBWBA1RCK2ZQFWTR3ZR");
        assert_eq!(meta.max_time, 1_692_007_200_000);
        assert_eq!(meta.stats.num_samples, 1200);
        assert_eq!(meta.stats.num_tombstones, 0);
        assert_eq!(meta.compaction.level, 2);
        assert_eq!(meta.compaction.sources.len(), 2);
        assert_eq!(meta.compaction.parents[0].max_time, 1_692_003_600_000);
        assert_eq!(meta.extra["thanos"]["source"], "sidecar");

        write_meta(dir.path(), &meta).unwrap();
        assert!(!dir.path().join("meta.json.tmp").exists());
        let again = read_meta(dir.path()).unwrap();
        assert_eq!(again, meta);
        let raw: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join(META_FILENAME)).unwrap()).unwrap();
        let orig: serde_json::Value = serde_json::from_str(PROMETHEUS_META).unwrap();
        assert_eq!(raw, orig, "JSON is semantically unchanged");
    }

    #[test]
    fn new_meta_has_prometheus_shape() {
        let id = Ulid::from_string("01H8XGJWBWBA1RCK2ZQFWTR3ZR").unwrap();
        let mut m = BlockMeta::new(id, 0, 7_200_000, 1, vec![id], Vec::new());
        m.stats.num_series = 3;
        let s = String::from_utf8(encode_meta(&m).unwrap()).unwrap();
        assert!(s.contains("\n\t\"minTime\": 0,"), "{s}");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "ulid": "01H8XGJWBWBA1RCK2ZQFWTR3ZR",
                "minTime": 0,
                "maxTime": 7_200_000,
                "stats": {"numSeries": 3},
                "compaction": {"level": 1, "sources": ["01H8XGJWBWBA1RCK2ZQFWTR3ZR"]},
                "version": 1
            })
        );

        let parent = Ulid::from_string("01H8XGJWBWBA1RCK2ZQFWTR400").unwrap();
        let m = BlockMeta::new(id, 0, 10, 2, vec![parent], vec![(parent, 0, 10)]);
        let v: serde_json::Value = serde_json::from_slice(&encode_meta(&m).unwrap()).unwrap();
        assert_eq!(
            v["compaction"],
            serde_json::json!({
                "level": 2,
                "sources": ["01H8XGJWBWBA1RCK2ZQFWTR400"],
                "parents": [{"ulid": "01H8XGJWBWBA1RCK2ZQFWTR400", "minTime": 0, "maxTime": 10}]
            })
        );
    }

    #[test]
    fn bad_meta_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read_meta(dir.path()), Err(BlockError::Io { .. })));
        fs::write(dir.path().join(META_FILENAME), "{").unwrap();
        assert!(matches!(read_meta(dir.path()), Err(BlockError::Meta(_))));
        let v2 = PROMETHEUS_META.replace("\"version\": 1", "\"version\": 2");
        fs::write(dir.path().join(META_FILENAME), v2).unwrap();
        let e = read_meta(dir.path()).unwrap_err();
        assert!(e.to_string().contains("version 2"), "{e}");
        let bad_ulid =
            PROMETHEUS_META.replace("01H8XGJWBWBA1RCK2ZQFWTR3ZR\",\n\t\"min", "nope\",\n\t\"min");
        fs::write(dir.path().join(META_FILENAME), bad_ulid).unwrap();
        assert!(read_meta(dir.path()).is_err());
    }
}
