//! `bcache`: bcache cache sets from `/sys/fs/bcache/<uuid>`: the set's B-tree and
//! journal figures, per backing device its dirty data, writeback controller and hit
//! and miss counters, per cache device its writes and I/O errors.
//!
//! bcache prints sizes "human readable" (`19.3k`, `1.2G`); they are read back as
//! procfs 0.8 reads them for node_exporter 1.5 (a fraction counts in 1/10.24ths of
//! the unit). With `--collector.bcache.priorityStats` (off by default, as reading
//! `priority_stats` makes the kernel walk every bucket) also each cache device's
//! unused and metadata percentages.
//! Where 1.5 would crash (an empty value file) the collector fails instead.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use super::{
    NodeCollector, NodeError, Result, dir_entries_with_prefix, family_entry, labels, parse_error,
};
use crate::exposition::family::{MetricFamily, MetricType};

/// Hit and miss counters of a backing device's `stats_total` (and `_five_minute`),
/// with the family each becomes (after `node_bcache_`) and its HELP.
const STATS: &[(&str, &str, &str)] = &[
    (
        "bypassed",
        "bypassed_bytes_total",
        "Amount of IO (both reads and writes) that has bypassed the cache.",
    ),
    (
        "cache_hits",
        "cache_hits_total",
        "Hits counted per individual IO as bcache sees them.",
    ),
    (
        "cache_misses",
        "cache_misses_total",
        "Misses counted per individual IO as bcache sees them.",
    ),
    (
        "cache_bypass_hits",
        "cache_bypass_hits_total",
        "Hits for IO intended to skip the cache.",
    ),
    (
        "cache_bypass_misses",
        "cache_bypass_misses_total",
        "Misses for IO intended to skip the cache.",
    ),
    (
        "cache_miss_collisions",
        "cache_miss_collisions_total",
        "Instances where data insertion from cache miss raced with write (data already present).",
    ),
    (
        "cache_readaheads",
        "cache_readaheads_total",
        "Count of times readahead occurred.",
    ),
];

/// Families: name after `node_bcache_`, type, HELP.
type Spec = (&'static str, MetricType, &'static str);

const SET: &[(&str, Spec)] = &[
    (
        "average_key_size",
        (
            "average_key_size_sectors",
            MetricType::Gauge,
            "Average data per key in the btree (sectors).",
        ),
    ),
    (
        "btree_cache_size",
        (
            "btree_cache_size_bytes",
            MetricType::Gauge,
            "Amount of memory currently used by the btree cache.",
        ),
    ),
    (
        "cache_available_percent",
        (
            "cache_available_percent",
            MetricType::Gauge,
            "Percentage of cache device without dirty data, usable for writeback (may contain clean cached data).",
        ),
    ),
    ("congested", ("congested", MetricType::Gauge, "Congestion.")),
    (
        "root_usage_percent",
        (
            "root_usage_percent",
            MetricType::Gauge,
            "Percentage of the root btree node in use (tree depth increases if too high).",
        ),
    ),
    (
        "tree_depth",
        ("tree_depth", MetricType::Gauge, "Depth of the btree."),
    ),
    (
        "internal/active_journal_entries",
        (
            "active_journal_entries",
            MetricType::Gauge,
            "Number of journal entries that are newer than the index.",
        ),
    ),
    (
        "internal/btree_nodes",
        (
            "btree_nodes",
            MetricType::Gauge,
            "Total nodes in the btree.",
        ),
    ),
    (
        "internal/btree_read_average_duration_us",
        (
            "btree_read_average_duration_seconds",
            MetricType::Gauge,
            "Average btree read duration.",
        ),
    ),
    (
        "internal/cache_read_races",
        (
            "cache_read_races_total",
            MetricType::Counter,
            "Counts instances where while data was being read from the cache, the bucket was reused and invalidated - i.e. where the pointer was stale after the read completed.",
        ),
    ),
];

const CACHE: &[(&str, Spec)] = &[
    (
        "io_errors",
        (
            "io_errors",
            MetricType::Gauge,
            "Number of errors that have occurred, decayed by io_error_halflife.",
        ),
    ),
    (
        "metadata_written",
        (
            "metadata_written_bytes_total",
            MetricType::Counter,
            "Sum of all non data writes (btree writes and all other metadata).",
        ),
    ),
    (
        "written",
        (
            "written_bytes_total",
            MetricType::Counter,
            "Sum of all data that has been written to the cache.",
        ),
    ),
];

const BACKING: &[Spec] = &[
    (
        "dirty_data_bytes",
        MetricType::Gauge,
        "Amount of dirty data for this backing device in the cache.",
    ),
    (
        "dirty_target_bytes",
        MetricType::Gauge,
        "Current dirty data target threshold for this backing device in bytes.",
    ),
    (
        "writeback_rate",
        MetricType::Gauge,
        "Current writeback rate for this backing device in bytes.",
    ),
    (
        "writeback_rate_proportional_term",
        MetricType::Gauge,
        "Current result of proportional controller, part of writeback rate",
    ),
    (
        "writeback_rate_integral_term",
        MetricType::Gauge,
        "Current result of integral controller, part of writeback rate",
    ),
    (
        "writeback_change",
        MetricType::Gauge,
        "Last writeback rate change step for this backing device.",
    ),
];

/// Families by name, created on first use.
struct Out(Vec<MetricFamily>);

impl Out {
    fn push(&mut self, (name, kind, help): Spec, labels: Vec<(String, String)>, v: f64) {
        family_entry(&mut self.0, &format!("node_bcache_{name}"), kind, help).push(labels, v);
    }
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    // No bcache: nothing to report, not a failure.
    let sets = dir_entries_with_prefix(&c.sys_path("fs/bcache"), "").unwrap_or_default();
    let mut fams = Out(Vec::new());
    // Everything is read before anything is kept: one bad value fails the collector.
    for (uuid, dir) in sets.into_iter().filter(|(n, _)| n.contains('-')) {
        read_set(&uuid, &dir, c.flags.bcache_priority_stats, &mut fams)?;
    }
    out.extend(fams.0);
    Ok(())
}

fn read_set(uuid: &str, dir: &Path, priority_stats: bool, fams: &mut Out) -> Result<()> {
    let set_labels = labels([("uuid", uuid)]);
    for (file, spec) in SET {
        let v = read_value(&dir.join(file))? as f64;
        // node_exporter takes the microseconds as nanoseconds; kept so that the
        // values match.
        let v = if file.ends_with("_us") { v * 1e-9 } else { v };
        fams.push(*spec, set_labels.clone(), v);
    }
    // Read only to fail as procfs does on a bad value; the set's totals are not
    // reported.
    for period in ["stats_five_minute", "stats_total"] {
        for (file, _, _) in STATS {
            read_value(&dir.join(period).join(file))?;
        }
    }
    for (device, bdev) in numbered(dir, "bdev")? {
        let l = labels([("uuid", uuid), ("backing_device", &device)]);
        let dirty = read_value(&bdev.join("dirty_data"))?;
        let wb = writeback(&bdev.join("writeback_rate_debug"))?;
        for (spec, v) in BACKING.iter().zip([
            dirty as f64,
            wb.target as f64,
            wb.rate as f64,
            wb.proportional as f64,
            wb.integral as f64,
            wb.change as f64,
        ]) {
            fams.push(*spec, l.clone(), v);
        }
        // Read only to fail as procfs does on a bad value; not reported.
        for (file, _, _) in STATS {
            read_value(&bdev.join("stats_five_minute").join(file))?;
        }
        for (file, name, help) in STATS {
            let v = read_value(&bdev.join("stats_total").join(file))?;
            fams.push((name, MetricType::Counter, help), l.clone(), v as f64);
        }
    }
    for (device, cache) in numbered(dir, "cache")? {
        let l = labels([("uuid", uuid), ("cache_device", &device)]);
        for (file, spec) in CACHE {
            let v = read_value(&cache.join(file))?;
            fams.push(*spec, l.clone(), v as f64);
        }
        if priority_stats {
            let (unused, metadata) = read_priority_stats(&cache.join("priority_stats"))?;
            fams.push(
                (
                    "priority_stats_unused_percent",
                    MetricType::Gauge,
                    "The percentage of the cache that doesn't contain any data.",
                ),
                l.clone(),
                unused as f64,
            );
            fams.push(
                (
                    "priority_stats_metadata_percent",
                    MetricType::Gauge,
                    "Bcache's metadata overhead.",
                ),
                l.clone(),
                metadata as f64,
            );
        }
    }
    Ok(())
}

/// The `Unused:` and `Metadata:` percentages of a cache device's `priority_stats`
/// (`Unused:\t\t4%`), as procfs reads them: the last word without its `%`, 0 when the
/// line is missing, an error when it does not parse or the file cannot be read.
fn read_priority_stats(path: &Path) -> Result<(u64, u64)> {
    let text = std::fs::read(path).map_err(|source| NodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&text);
    let (mut unused, mut metadata) = (0, 0);
    for line in text.lines() {
        let target = if line.starts_with("Unused:") {
            &mut unused
        } else if line.starts_with("Metadata:") {
            &mut metadata
        } else {
            continue;
        };
        let word = line.split_whitespace().last().unwrap_or_default();
        let digits = word.strip_suffix('%').unwrap_or(word);
        // Go's ParseUint in base 10: digits only (no sign).
        *target = Some(digits)
            .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| parse_error(path, format!("bad percentage {word:?}")))?;
    }
    Ok((unused, metadata))
}

/// The set's entries `<prefix><digit>…` (`bdev0`, `cache0`), by name.
fn numbered(dir: &Path, prefix: &str) -> Result<Vec<(String, PathBuf)>> {
    Ok(dir_entries_with_prefix(dir, prefix)?
        .into_iter()
        .filter(|(rest, _)| rest.starts_with(|c: char| c.is_ascii_digit()))
        .map(|(rest, path)| (format!("{prefix}{rest}"), path))
        .collect())
}

/// A value file: missing is 0; its last byte (the newline) dropped, the rest a
/// human-readable number.
fn read_value(path: &Path) -> Result<u64> {
    let text = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(source) => {
            return Err(NodeError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    let text = String::from_utf8_lossy(text.split_last().map_or(&[][..], |(_, rest)| rest));
    if text.is_empty() {
        return Err(parse_error(path, "empty value"));
    }
    dehumanize(&text).ok_or_else(|| parse_error(path, format!("bad value {text:?}")))
}

/// The controller's state from `writeback_rate_debug`.
#[derive(Default)]
struct Writeback {
    rate: u64,
    target: u64,
    proportional: i64,
    integral: i64,
    change: i64,
}

fn writeback(path: &Path) -> Result<Writeback> {
    let text = std::fs::read_to_string(path).map_err(|source| NodeError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut wb = Writeback::default();
    for line in text.lines() {
        let bad = || parse_error(path, format!("bad line {line:?}"));
        let last = line.split_whitespace().last().unwrap_or_default();
        let unsigned = |s: &str| dehumanize(s).ok_or_else(bad);
        let signed = |s: &str| -> Result<i64> {
            match s.strip_prefix('-') {
                Some(magnitude) => Ok((unsigned(magnitude)? as i64).wrapping_neg()),
                None => Ok(unsigned(s)? as i64),
            }
        };
        if line.starts_with("rate:") {
            wb.rate = unsigned(last.trim_end_matches("/sec"))?;
        } else if line.starts_with("dirty:") {
            unsigned(last)?;
        } else if line.starts_with("target:") {
            wb.target = unsigned(last)?;
        } else if line.starts_with("proportional:") {
            wb.proportional = signed(last)?;
        } else if line.starts_with("integral:") {
            wb.integral = signed(last)?;
        } else if line.starts_with("change:") {
            wb.change = signed(last.trim_end_matches("/sec"))?;
        } else if line.starts_with("next io:") {
            last.trim_end_matches("ms")
                .parse::<i64>()
                .map_err(|_| bad())?;
        }
    }
    Ok(wb)
}

/// A number as bcache's `bch_hprint` writes it (`19.3k`, `1.2G`, `512`) read back as
/// procfs 0.8 does: the unit suffix is a power of 1024 (an unknown one makes 0), the
/// fraction counts tenths of 1024, and the result is converted to u64 as Go does on
/// x86-64 (negative values wrap, 2⁶⁴ and more become 2⁶³).
fn dehumanize(s: &str) -> Option<u64> {
    // bcache writes ASCII; anything else is not one of its numbers.
    if !s.is_ascii() {
        return None;
    }
    let last = *s.as_bytes().last()?;
    let (number, multiplier) = if last > b'9' {
        let power = b"kMGTPEZY"
            .iter()
            .position(|&u| u == last)
            .map(|i| i as i32 + 1);
        let multiplier = power.map_or(0.0, |p| 1024f64.powi(p));
        let number = &s[..s.len() - 1];
        let (whole, fraction) = match number.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (number, None),
        };
        let mut mantissa = go_float(whole)?;
        if let Some(f) = fraction {
            mantissa += go_float(f)? / 10.24;
        }
        (mantissa, multiplier)
    } else {
        (go_float(s)?, 1.0)
    };
    let x = number * multiplier;
    Some(if x.is_nan() || x >= 18_446_744_073_709_551_616.0 {
        1 << 63
    } else if x >= 9_223_372_036_854_775_808.0 {
        x as u64
    } else {
        (x as i64) as u64
    })
}

/// A float as Go's `ParseFloat` reads bcache's output: digits with an optional sign
/// and point.
fn go_float(s: &str) -> Option<f64> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn human_readable_numbers_as_procfs_reads_them() {
        for (s, want) in [
            ("19.3k", Some(19756)),
            ("1.1M", Some(1150976)),
            ("1.10k", Some(2024)),
            ("0.5k", Some(500)),
            ("1.2G", Some(1283457024)),
            ("512M", Some(536870912)),
            ("2.0", Some(2)),
            ("95", Some(95)),
            ("12X", Some(0)),
            ("-1.2M", Some(18446744073708707840)),
            ("18446744073709551615", Some(1 << 63)),
            ("abc", None),
            ("50%", None),
            ("1\u{e9}", None),
            (" 95", None),
        ] {
            assert_eq!(dehumanize(s), want, "{s:?}");
        }
    }

    const SET_DIR: &str = "sys/fs/bcache/5f0b6c8e-2d74-4a39-b1e6-93c2a7d4e081";

    fn cache_set(fx: &Fixture) {
        fx.write(&format!("{SET_DIR}/average_key_size"), "19.3k\n")
            .write(
                &format!("{SET_DIR}/internal/btree_read_average_duration_us"),
                "412\n",
            )
            .write(&format!("{SET_DIR}/bdev0/dirty_data"), "37.9M\n")
            .write(
                &format!("{SET_DIR}/bdev0/writeback_rate_debug"),
                "rate:\t\t1.1M/sec\ndirty:\t\t37.9M\ntarget:\t\t20.4G\nproportional:\t-4.5k\n\
                 integral:\t790.0k\nchange:\t\t-321.5k/sec\nnext io:\t17ms\n",
            )
            .write(
                &format!("{SET_DIR}/bdev0/stats_total/cache_hits"),
                "1296383\n",
            )
            .write(&format!("{SET_DIR}/cache0/written"), "48.7G\n")
            .write("sys/fs/bcache/register", "");
    }

    #[test]
    fn set_backing_and_cache_devices() {
        let fx = Fixture::new();
        cache_set(&fx);
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(&fams, "node_bcache_average_key_size_sectors", &[]),
            19756.0
        );
        assert_eq!(
            value(
                &fams,
                "node_bcache_btree_read_average_duration_seconds",
                &[]
            ),
            412.0 * 1e-9
        );
        let bdev = [("backing_device", "bdev0")];
        assert_eq!(value(&fams, "node_bcache_writeback_rate", &bdev), 1150976.0);
        assert_eq!(
            value(&fams, "node_bcache_writeback_rate_proportional_term", &bdev),
            -4596.0
        );
        assert_eq!(
            value(&fams, "node_bcache_writeback_change", &bdev),
            -329204.0
        );
        assert_eq!(
            value(&fams, "node_bcache_cache_hits_total", &bdev),
            1296383.0
        );
        assert_eq!(value(&fams, "node_bcache_cache_misses_total", &bdev), 0.0);
        assert!(
            value(
                &fams,
                "node_bcache_written_bytes_total",
                &[("cache_device", "cache0")]
            ) > 5e10
        );
    }

    #[test]
    fn priority_stats_only_when_asked_for() {
        let fx = Fixture::new();
        cache_set(&fx);
        let fams = run(&fx.collector(), collect);
        assert!(!fams.iter().any(|f| f.name.contains("priority")));
        let c = fx.collector_with(&[("collector.bcache.priorityStats", "true")]);
        // Not there: the collector fails, as in procfs.
        assert!(collect(&c, &mut Vec::new()).is_err());
        fx.write(
            &format!("{SET_DIR}/cache0/priority_stats"),
            "Unused:\t\t4%\nClean:\t\t71%\nDirty:\t\t24%\nMetadata:\t1%\nAverage:\t9834\n",
        );
        let fams = run(&c, collect);
        let cache = [("cache_device", "cache0")];
        let unused = "node_bcache_priority_stats_unused_percent";
        assert_eq!(value(&fams, unused, &cache), 4.0);
        let metadata = "node_bcache_priority_stats_metadata_percent";
        assert_eq!(value(&fams, metadata, &cache), 1.0);
        fx.write(
            &format!("{SET_DIR}/cache0/priority_stats"),
            "Unused:\t+4%\n",
        );
        assert!(collect(&c, &mut Vec::new()).is_err());
    }

    #[test]
    fn bad_values_fail_instead_of_crashing() {
        for (file, text) in [
            ("congested", ""),
            ("congested", "abc\n"),
            ("bdev0/stats_five_minute/cache_hits", "x\n"),
        ] {
            let fx = Fixture::new();
            cache_set(&fx);
            fx.write(&format!("{SET_DIR}/{file}"), text);
            assert!(
                collect(&fx.collector(), &mut Vec::new()).is_err(),
                "{file}: {text:?}"
            );
        }
        let fx = Fixture::new();
        cache_set(&fx);
        std::fs::remove_file(
            fx.dir
                .path()
                .join(SET_DIR)
                .join("bdev0/writeback_rate_debug"),
        )
        .unwrap();
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
