//! `zfs`: OpenZFS's kstats from `/proc/spl/kstat/zfs`: the ARC, DMU, dnode, prefetch,
//! ZIL and fault-management counters (one untyped family per kstat row, named
//! `node_zfs_<subsystem>_<row>` with the kstat path as HELP, as node_exporter 1.5
//! names them), and per pool its I/O counters, per-dataset counters and state.
//!
//! As in 1.5, only unsigned 64-bit rows (kstat type 4) are reported, and the DBUF
//! statistics are looked for under 1.5's name `dbuf_stats`, which OpenZFS does not
//! use. Where 1.5 would crash (a row name that is no metric name, a short I/O line)
//! the collector fails instead.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::{
    NodeCollector, NodeError, Result, dir_entries_with_prefix, family_entry, labels, parse_error,
    read_file,
};
use crate::exposition::family::{FamilySample, MetricFamily, MetricType};

/// The kstat files read: file under `spl/kstat/zfs`, metric prefix after `node_`.
const MISC: &[(&str, &str)] = &[
    ("abdstats", "zfs_abd"),
    ("arcstats", "zfs_arc"),
    ("dbuf_stats", "zfs_dbuf"),
    ("dmu_tx", "zfs_dmu_tx"),
    ("dnodestats", "zfs_dnode"),
    ("fm", "zfs_fm"),
    ("vdev_cache_stats", "zfs_vdev_cache"),
    ("vdev_mirror_stats", "zfs_vdev_mirror"),
    ("xuio_stats", "zfs_xuio"),
    ("zfetchstats", "zfs_zfetch"),
    ("zil", "zfs_zil"),
];

/// The pool states node_exporter 1.5 reports.
const POOL_STATES: &[&str] = &[
    "online", "degraded", "faulted", "offline", "removed", "unavail",
];

/// kstat's type number for an unsigned 64-bit value.
const KSTAT_DATA_UINT64: &str = "4";

/// Families in the order first seen, each series once (a repeated one keeps the
/// first, as node_exporter's registry does).
#[derive(Default)]
struct Families {
    families: Vec<MetricFamily>,
    seen: HashSet<(String, Vec<(String, String)>)>,
}

impl Families {
    fn push(
        &mut self,
        name: String,
        kind: MetricType,
        help: &str,
        labels: Vec<(String, String)>,
        v: f64,
    ) {
        if !self.seen.insert((name.clone(), labels.clone())) {
            return;
        }
        let family = family_entry(&mut self.families, &name, kind, help);
        family.samples.push(FamilySample {
            name,
            labels,
            value: v,
        });
    }
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let root = c.proc_path("spl/kstat/zfs");
    // No ZFS module: node_exporter's "no data".
    let entries = dir_entries_with_prefix(&root, "")?;
    let mut fams = Families::default();
    let result = read_all(&root, &entries, &mut fams);
    // What was read before a failure is kept, as node_exporter sends rows as it reads.
    out.extend(fams.families);
    result
}

fn read_all(root: &Path, entries: &[(String, PathBuf)], fams: &mut Families) -> Result<()> {
    for (file, prefix) in MISC {
        let path = root.join(file);
        // A kstat this module version does not have is skipped; one that cannot be
        // read fails the collector.
        let Ok(mut kstat) = std::fs::File::open(&path) else {
            continue;
        };
        let mut text = String::new();
        std::io::Read::read_to_string(&mut kstat, &mut text).map_err(|source| NodeError::Io {
            path: path.clone(),
            source,
        })?;
        for (row, kind, value) in named_rows(&path, &text)? {
            if kind != KSTAT_DATA_UINT64 {
                continue;
            }
            let name = format!("node_{prefix}_{}", metric_part(&path, row)?);
            let v = parse_u64(&path, row, value)?;
            fams.push(
                name,
                MetricType::Untyped,
                &format!("kstat.zfs.misc.{file}.{row}"),
                Vec::new(),
                v,
            );
        }
    }
    // Pools: every pool's I/O, then every dataset, then every state, as node_exporter
    // globs them. A listed file that cannot be read fails the collector.
    let pool_files = |matches: &dyn Fn(&str) -> bool| -> Vec<(String, PathBuf)> {
        let mut found = Vec::new();
        for (pool, dir) in entries {
            if let Ok(files) = dir_entries_with_prefix(dir, "") {
                found.extend(
                    files
                        .into_iter()
                        .filter(|(f, _)| matches(f))
                        .map(|(_, path)| (pool.clone(), path)),
                );
            }
        }
        found
    };
    for (pool, path) in pool_files(&|f| f == "io") {
        pool_io(&path, &pool, &read_file(&path)?, fams)?;
    }
    for (pool, path) in pool_files(&|f| f.starts_with("objset-")) {
        dataset(&path, &pool, &read_file(&path)?, fams)?;
    }
    for (pool, path) in pool_files(&|f| f == "state") {
        let text = read_file(&path)?;
        let state = text.split('\n').next().unwrap_or_default().to_lowercase();
        for s in POOL_STATES {
            fams.push(
                "node_zfs_zpool_state".to_string(),
                MetricType::Gauge,
                "kstat.zfs.misc.state",
                labels([("zpool", &pool), ("state", s)]),
                if state == *s { 1.0 } else { 0.0 },
            );
        }
    }
    Ok(())
}

/// The rows (name, type, value) of a named kstat, after its `name type data` header.
/// A file without the header is an error.
fn named_rows<'a>(path: &Path, text: &'a str) -> Result<Vec<(&'a str, &'a str, &'a str)>> {
    let mut lines = text.lines();
    if !lines
        .by_ref()
        .any(|l| l.split_whitespace().eq(["name", "type", "data"]))
    {
        return Err(parse_error(path, "no \"name type data\" header"));
    }
    Ok(lines
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            Some((f.next()?, f.next()?, f.next()?))
        })
        .collect())
}

/// A pool's `io` kstat: a header of column names, then a line of values.
fn pool_io(path: &Path, pool: &str, text: &str, fams: &mut Families) -> Result<()> {
    let mut lines = text.lines();
    let Some(header) = lines.by_ref().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() >= 12 && f[0] == "nread").then_some(f)
    }) else {
        return Ok(());
    };
    for line in lines {
        let values: Vec<&str> = line.split_whitespace().collect();
        if values.len() < header.len() {
            return Err(parse_error(path, format!("short line {line:?}")));
        }
        for (column, value) in header.iter().zip(values) {
            let v = parse_u64(path, column, value)?;
            fams.push(
                format!("node_zfs_zpool_{}", metric_part(path, column)?),
                MetricType::Untyped,
                &format!("kstat.zfs.misc.io.{column}"),
                labels([("zpool", pool)]),
                v,
            );
        }
    }
    Ok(())
}

/// A dataset's `objset-*` kstat: `dataset_name` names it, the other unsigned rows
/// are its counters.
fn dataset(path: &Path, pool: &str, text: &str, fams: &mut Families) -> Result<()> {
    // Rows before `dataset_name` carry empty labels, as in node_exporter.
    let (mut zpool, mut name) = (String::new(), String::new());
    for (row, kind, value) in named_rows(path, text)? {
        if row == "dataset_name" {
            zpool = pool.to_string();
            name = value.to_string();
            continue;
        }
        if kind != KSTAT_DATA_UINT64 {
            continue;
        }
        let v = parse_u64(path, row, value)?;
        fams.push(
            format!("node_zfs_zpool_dataset_{}", metric_part(path, row)?),
            MetricType::Untyped,
            &format!("kstat.zfs.misc.objset.{row}"),
            labels([("zpool", &zpool), ("dataset", &name)]),
            v,
        );
    }
    Ok(())
}

/// The metric-name part of a row: after its last `.`, `-` as `_`. A row that makes
/// no metric name is an error.
fn metric_part(path: &Path, row: &str) -> Result<String> {
    let part = row.rsplit('.').next().unwrap_or(row).replace('-', "_");
    if part.is_empty() || !part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return Err(parse_error(
            path,
            format!("row {row:?} makes no metric name"),
        ));
    }
    Ok(part)
}

fn parse_u64(path: &Path, row: &str, value: &str) -> Result<f64> {
    if !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(parse_error(path, format!("bad value {value:?} of {row}")));
    }
    value
        .parse::<u64>()
        .map(|v| v as f64)
        .map_err(|_| parse_error(path, format!("bad value {value:?} of {row}")))
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    const ARCSTATS: &str = "13 1 0x01 123 33456 8468629416 1157648612452\n\
        name                            type data\n\
        hits                            4    69183412\n\
        memory_available_bytes          3    -1048576\n\
        c-max                           4    007\n";

    #[test]
    fn kstats_pools_and_datasets() {
        let fx = Fixture::new();
        let z = "proc/spl/kstat/zfs";
        fx.write(&format!("{z}/arcstats"), ARCSTATS)
            .write(&format!("{z}/fm"), "name type data\nerpt-dropped 4 2\nfoo.bar 4 3\n")
            .write(
                &format!("{z}/tank/io"),
                "42 3 0x00 1 80 8496173531 1157676511938\n\
                 nread    nwritten reads    writes   wtime    wlentime wupdate  rtime    rlentime rupdate  wcnt     rcnt\n\
                 1120954368 8364834816 67201    412735   1048576173 3712634891 1157674918127 2197146284 19871238476 1157674918127 0        0\n",
            )
            .write(
                &format!("{z}/tank/objset-0x185"),
                "name type data\nwrites 4 1\ndataset_name 7 tank/images\nnread 4 493918208512\n",
            )
            .write(&format!("{z}/tank/state"), "ONLINE\n");
        let fams = run(&fx.collector(), collect);
        let arc = find(&fams, "node_zfs_arc_hits");
        assert_eq!(
            (arc.kind, arc.help.as_str()),
            (MetricType::Untyped, "kstat.zfs.misc.arcstats.hits")
        );
        assert_eq!(arc.samples[0].value, 69183412.0);
        assert_eq!(value(&fams, "node_zfs_arc_c_max", &[]), 7.0);
        assert!(
            fams.iter()
                .all(|f| f.name != "node_zfs_arc_memory_available_bytes")
        );
        assert_eq!(
            find(&fams, "node_zfs_fm_erpt_dropped").help,
            "kstat.zfs.misc.fm.erpt-dropped"
        );
        assert_eq!(value(&fams, "node_zfs_fm_bar", &[]), 3.0);
        assert_eq!(
            value(&fams, "node_zfs_zpool_nread", &[("zpool", "tank")]),
            1120954368.0
        );
        assert_eq!(
            value(
                &fams,
                "node_zfs_zpool_dataset_nread",
                &[("zpool", "tank"), ("dataset", "tank/images")]
            ),
            493918208512.0
        );
        assert_eq!(
            value(
                &fams,
                "node_zfs_zpool_dataset_writes",
                &[("zpool", ""), ("dataset", "")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &fams,
                "node_zfs_zpool_state",
                &[("zpool", "tank"), ("state", "online")]
            ),
            1.0
        );
        assert_eq!(
            value(
                &fams,
                "node_zfs_zpool_state",
                &[("zpool", "tank"), ("state", "faulted")]
            ),
            0.0
        );
    }

    #[test]
    fn malformed_kstats_fail() {
        for (file, text) in [
            ("arcstats", "name type data\nhits 4 abc\n"),
            ("arcstats", "hits 4 1\n"),
            ("arcstats", "name type data\nfoo+bar 4 1\n"),
            (
                "tank/io",
                "nread nwritten reads writes wtime wlentime wupdate rtime rlentime rupdate wcnt rcnt\n1 2 3\n",
            ),
            ("tank/objset-0x1", "dataset_name 7 tank\n"),
        ] {
            let fx = Fixture::new();
            fx.write(&format!("proc/spl/kstat/zfs/{file}"), text);
            assert!(
                collect(&fx.collector(), &mut Vec::new()).is_err(),
                "{file}: {text:?}"
            );
        }
    }

    #[test]
    fn no_zfs_fails() {
        let fx = Fixture::new();
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
