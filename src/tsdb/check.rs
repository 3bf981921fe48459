//! `odin tsdb check`: reads a data directory and reports WAL damage and block
//! problems without changing anything, so it is safe on a directory a running ODIN
//! holds (the newest WAL segment may then end in a record still being written).

use std::fs;
use std::path::Path;

use crate::log::wal;
use crate::tsdb::block::Block;
use crate::tsdb::block::meta::read_meta;
use crate::tsdb::chunkenc::{ENCODING_XOR, XorIterator};
use crate::tsdb::db::CORRUPTED_BLOCKS_DIR;
use crate::tsdb::error::{Result, TsdbError};

/// What a check found: `info` describes what was read, `problems` is what is wrong
/// (empty when the directory is sound).
#[derive(Debug, Default)]
pub struct CheckReport {
    pub info: Vec<String>,
    pub problems: Vec<String>,
}

/// Checks the WAL (every record's checksum, gaps in the numbering, damage kept
/// aside earlier) and every block (meta.json, index, every chunk decoded).
pub fn check(dir: &Path) -> Result<CheckReport> {
    let mut r = CheckReport::default();
    if !dir.is_dir() {
        return Err(TsdbError::io(
            format!("open {}", dir.display()),
            std::io::Error::from(std::io::ErrorKind::NotFound),
        ));
    }
    check_wal(&dir.join("wal"), &mut r)?;
    check_blocks(dir, &mut r)?;
    Ok(r)
}

fn check_wal(dir: &Path, r: &mut CheckReport) -> Result<()> {
    if !dir.is_dir() {
        r.info.push("wal: none".into());
        return Ok(());
    }
    let w = wal::inspect(dir)?;
    r.info.push(format!(
        "wal: checkpoint {}, {} segments, {} valid records",
        w.checkpoint
            .map(|c| format!("{c:08}"))
            .unwrap_or_else(|| "none".into()),
        w.segments.len(),
        w.records
    ));
    for (from, to) in &w.missing {
        r.problems.push(format!(
            "wal: segments {from:08}..={to:08} are missing; their records are lost"
        ));
    }
    let last = w.segments.last().map(|s| format!("{s:08}"));
    for (file, d) in &w.damage {
        let tail = Some(file) == last.as_ref() && d.end == file_len(&dir.join(file));
        r.problems.push(format!(
            "wal: {file}: bytes {}..{} damaged ({}){}",
            d.start,
            d.end,
            d.corruption,
            if tail {
                "; a torn tail of the newest segment, normal after a crash or while ODIN writes"
            } else {
                "; the records in them are lost, the next start skips them"
            }
        ));
    }
    for name in &w.kept_aside {
        r.problems.push(format!(
            "wal: {}/{name}: damaged bytes kept from an earlier repair",
            wal::CORRUPTED_DIR
        ));
    }
    Ok(())
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn check_blocks(dir: &Path, r: &mut CheckReport) -> Result<()> {
    let entries =
        fs::read_dir(dir).map_err(|e| TsdbError::io(format!("read {}", dir.display()), e))?;
    let mut names: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| ulid::Ulid::from_string(n).is_ok())
        .collect();
    names.sort();
    let mut sound = 0;
    for name in &names {
        let path = dir.join(name);
        if !path.join("meta.json").exists() {
            r.problems.push(format!("block {name}: no meta.json"));
            continue;
        }
        if let Err(e) = read_meta(&path) {
            r.problems.push(format!("block {name}: {e}"));
            continue;
        }
        let block = match Block::open(&path) {
            Ok(b) => b,
            Err(e) => {
                r.problems.push(format!("block {name}: {e}"));
                continue;
            }
        };
        let (chunks, damaged, first) = check_chunks(&block);
        if damaged > 0 {
            r.problems.push(format!(
                "block {name}: {damaged} of {chunks} chunks damaged (first: {})",
                first.unwrap_or_default()
            ));
        } else {
            sound += 1;
        }
    }
    r.info
        .push(format!("blocks: {} found, {sound} sound", names.len()));
    if let Ok(entries) = fs::read_dir(dir.join(CORRUPTED_BLOCKS_DIR)) {
        let mut moved: Vec<String> = entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        moved.sort();
        for name in moved {
            r.problems.push(format!(
                "block {CORRUPTED_BLOCKS_DIR}/{name}: moved aside at an earlier start"
            ));
        }
    }
    Ok(())
}

/// Chunks read, chunks damaged, and the first damage found.
fn check_chunks(block: &Block) -> (u64, u64, Option<String>) {
    let (mut chunks, mut damaged, mut first) = (0u64, 0u64, None);
    let mut note = |what: String, damaged: &mut u64| {
        *damaged += 1;
        first.get_or_insert(what);
    };
    let refs = match block.index().all_postings() {
        Ok(refs) => refs,
        Err(e) => {
            note(format!("postings: {e}"), &mut damaged);
            return (0, damaged, first);
        }
    };
    for r in refs {
        let metas = match block.index().series(r) {
            Ok((_, metas)) => metas,
            Err(e) => {
                note(format!("series {r}: {e}"), &mut damaged);
                continue;
            }
        };
        for m in metas {
            chunks += 1;
            match block.chunks().chunk(m.chunk_ref) {
                Ok((ENCODING_XOR, data)) => {
                    let mut it = XorIterator::new(data);
                    for _ in it.by_ref() {}
                    if let Some(e) = it.err() {
                        note(format!("chunk {}: {e}", m.chunk_ref), &mut damaged);
                    }
                }
                Ok(_) => {}
                Err(e) => note(e.to_string(), &mut damaged),
            }
        }
    }
    (chunks, damaged, first)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::storage::Appendable;
    use crate::tsdb::{Db, DbOptions, TsdbMetrics};

    const H: i64 = 3_600_000;

    fn data_dir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(
            dir.path(),
            DbOptions {
                retention_ms: 0,
                ..DbOptions::default()
            },
            TsdbMetrics::default(),
            crate::log::wal::WalLog::in_data_dir(dir.path()).segment_size(256),
        )
        .unwrap();
        let fill = |from: i64, to: i64| {
            let mut t = from;
            while t < to {
                let mut app = db.appender();
                app.append(&Labels::from_pairs([("__name__", "a")]), t, 1.0)
                    .unwrap();
                app.commit().unwrap();
                t += 600_000;
            }
        };
        fill(0, 4 * H);
        db.compact().unwrap();
        // More segments after the checkpoint.
        fill(4 * H, 8 * H);
        db.close().unwrap();
        dir
    }

    #[test]
    fn a_sound_directory_has_no_problems() {
        let dir = data_dir();
        let r = check(dir.path()).unwrap();
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert!(
            r.info.iter().any(|l| l.contains("1 found, 1 sound")),
            "{:?}",
            r.info
        );
    }

    #[test]
    fn wal_and_block_damage_is_reported_and_nothing_changes() {
        let dir = data_dir();
        let wal = dir.path().join("wal");
        let segs = wal::inspect(&wal).unwrap().segments;
        assert!(segs.len() >= 3, "{segs:?}");
        let first = wal.join(format!("{:08}", segs[0]));
        let mut b = fs::read(&first).unwrap();
        b[10] ^= 1;
        fs::write(&first, &b).unwrap();
        fs::remove_file(wal.join(format!("{:08}", segs[1]))).unwrap();
        let block = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .find(|e| ulid::Ulid::from_string(&e.file_name().to_string_lossy()).is_ok())
            .unwrap()
            .path();
        let seg = block.join("chunks").join("000001");
        let mut c = fs::read(&seg).unwrap();
        c[12] ^= 0xff;
        fs::write(&seg, &c).unwrap();
        fs::create_dir_all(dir.path().join("01ARZ3NDEKTSV4RRFFQ69G5FAV")).unwrap();

        let r = check(dir.path()).unwrap();
        let all = r.problems.join("\n");
        assert!(all.contains("missing"), "{all}");
        assert!(all.contains("damaged ("), "{all}");
        assert!(all.contains("chunks damaged"), "{all}");
        assert!(all.contains("no meta.json"), "{all}");
        assert_eq!(fs::read(&first).unwrap(), b, "check changes nothing");
        assert!(!wal.join(wal::CORRUPTED_DIR).exists());
    }
}
