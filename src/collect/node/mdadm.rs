//! `mdadm`: Linux software RAID arrays from `/proc/mdstat`: per array its state
//! (active, inactive, recovering, resync, check), disks active, failed and spare,
//! disks required, size in blocks and blocks synced (less than the size while it
//! recovers, resyncs or checks).
//!
//! Parsed as procfs 0.8 does for node_exporter 1.5, quirks included: a `reshape`
//! is not recognised (the array shows active and fully synced), and an array whose
//! lines cannot be read fails the collector.

use std::path::Path;

use super::{NodeCollector, Result, labels, parse_error, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

/// One array as `/proc/mdstat` describes it.
#[derive(Debug, PartialEq)]
struct Array {
    name: String,
    /// `active`, `inactive`, or what it is doing: `recovering`, `resyncing`,
    /// `checking`.
    state: String,
    disks_active: i64,
    disks_total: i64,
    disks_failed: usize,
    disks_spare: usize,
    blocks: i64,
    blocks_synced: i64,
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("mdstat");
    let arrays = parse(&path, &read_file(&path)?)?;
    let mut state = MetricFamily::new(
        "node_md_state",
        MetricType::Gauge,
        "Indicates the state of md-device.",
    );
    let mut disks = MetricFamily::new(
        "node_md_disks",
        MetricType::Gauge,
        "Number of active/failed/spare disks of device.",
    );
    let mut required = MetricFamily::new(
        "node_md_disks_required",
        MetricType::Gauge,
        "Total number of disks of device.",
    );
    let mut blocks = MetricFamily::new(
        "node_md_blocks",
        MetricType::Gauge,
        "Total number of blocks on device.",
    );
    let mut synced = MetricFamily::new(
        "node_md_blocks_synced",
        MetricType::Gauge,
        "Number of blocks synced on device.",
    );
    for a in &arrays {
        let device = a.name.as_str();
        for (label, parsed) in [
            ("active", "active"),
            ("inactive", "inactive"),
            ("recovering", "recovering"),
            ("resync", "resyncing"),
            ("check", "checking"),
        ] {
            let v = if a.state == parsed { 1.0 } else { 0.0 };
            state.push(labels([("device", device), ("state", label)]), v);
        }
        for (label, v) in [
            ("active", a.disks_active as f64),
            ("failed", a.disks_failed as f64),
            ("spare", a.disks_spare as f64),
        ] {
            disks.push(labels([("device", device), ("state", label)]), v);
        }
        required.push(labels([("device", device)]), a.disks_total as f64);
        blocks.push(labels([("device", device)]), a.blocks as f64);
        synced.push(labels([("device", device)]), a.blocks_synced as f64);
    }
    out.extend([state, disks, required, blocks, synced]);
    Ok(())
}

/// Every array of `/proc/mdstat`. An array is a line `md1 : active raid1 sda1[0] …`
/// followed by its status line (`… blocks … [2/2] [UU]`), perhaps a bitmap line, and
/// a sync line when a recovery, resync or check runs.
fn parse(path: &Path, text: &str) -> Result<Vec<Array>> {
    let bad = |what: String| parse_error(path, what);
    let lines: Vec<&str> = text.split('\n').collect();
    let mut arrays = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty()
            || line.starts_with(' ')
            || line.starts_with("Personalities")
            || line.starts_with("unused")
        {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, _, activity, ..] = fields[..] else {
            return Err(bad(format!("too few fields in array line {line:?}")));
        };
        if lines.len() <= i + 3 {
            return Err(bad(format!("too few lines for array {name}")));
        }
        let status = lines[i + 1];
        let blocks: i64 = status
            .split_whitespace()
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad(format!("bad size in status line {status:?}")))?;
        let (disks_active, disks_total) = if line.contains("raid0") || line.contains("linear") {
            // Striped and concatenated arrays list no [n/m]: every member counts.
            let members = line.matches('[').count() as i64;
            (members, members)
        } else if line.contains("inactive") {
            (0, 0)
        } else {
            disk_counts(status)
                .ok_or_else(|| bad(format!("no [total/active] in status line {status:?}")))?
        };
        let sync = if lines[i + 2].contains("bitmap") {
            lines[i + 3]
        } else {
            lines[i + 2]
        };
        let mut state = activity.to_string();
        let mut blocks_synced = blocks;
        let recovering = sync.contains("recovery");
        let checking = sync.contains("check");
        if recovering || checking || sync.contains("resync") {
            state = if recovering {
                "recovering"
            } else if checking {
                "checking"
            } else {
                "resyncing"
            }
            .to_string();
            blocks_synced = if sync.contains("PENDING") || sync.contains("DELAYED") {
                0
            } else {
                synced_blocks(sync).ok_or_else(|| bad(format!("bad sync line {sync:?}")))?
            };
        }
        arrays.push(Array {
            name: name.to_string(),
            state,
            disks_active,
            disks_total,
            disks_failed: line.matches("(F)").count(),
            disks_spare: line.matches("(S)").count(),
            blocks,
            blocks_synced,
        });
    }
    Ok(arrays)
}

/// `(active, total)` disks from a status line's `<n> blocks … [total/active] [UU_]`.
fn disk_counts(status: &str) -> Option<(i64, i64)> {
    let after_blocks = status.split_once(" blocks ")?.1;
    // The last `[t/a] [U_…]` on the line, as a greedy match finds it.
    after_blocks.match_indices('[').rev().find_map(|(at, _)| {
        let (total, rest) = after_blocks[at + 1..].split_once('/')?;
        let (active, rest) = rest.split_once("] [")?;
        let flags = rest.split_once(']')?.0;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(total) || !digits(active) || flags.is_empty() {
            return None;
        }
        if !flags.bytes().all(|b| b == b'U' || b == b'_') {
            return None;
        }
        Some((active.parse().ok()?, total.parse().ok()?))
    })
}

/// Blocks synced from a sync line
/// (`recovery = 27.4% (535234560/1953382464) finish=118.3min speed=199708K/sec`).
/// procfs also requires the percentage, the time left and the speed to be numbers,
/// and so does this.
fn synced_blocks(sync: &str) -> Option<i64> {
    let synced = sync.match_indices('(').find_map(|(at, _)| {
        let (done, rest) = sync[at + 1..].split_once('/')?;
        let total = rest.split_once(')')?.0;
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        (digits(done) && digits(total)).then(|| done.parse::<i64>().ok())?
    })?;
    let percent = between(sync, "= ", |s| s.rfind('%'))?;
    percent.trim().parse::<f64>().ok()?;
    between(sync, "finish=", |s| s.rfind("min"))?
        .parse::<f64>()
        .ok()?;
    between(sync, "speed=", |s| {
        s.rfind(|c: char| c.is_ascii_uppercase())
    })?
    .parse::<f64>()
    .ok()?;
    Some(synced)
}

/// The text after the first `prefix` that has an end (found by `end` in what
/// follows it, at least one character on).
fn between<'a>(s: &'a str, prefix: &str, end: impl Fn(&str) -> Option<usize>) -> Option<&'a str> {
    s.match_indices(prefix).find_map(|(at, _)| {
        let rest = &s[at + prefix.len()..];
        let stop = end(rest).filter(|&stop| stop > 0)?;
        Some(&rest[..stop])
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    const MDSTAT: &str = "Personalities : [raid1] [raid10] [raid0]\n\
md1 : active raid10 nvme6n1[4](S) nvme5n1[3] nvme4n1[2] nvme3n1[1] nvme2n1[0]\n      \
7501211648 blocks super 1.2 512K chunks 2 near-copies [4/4] [UUUU]\n      \
bitmap: 2/56 pages [8KB], 65536KB chunk\n\
\n\
md2 : active raid1 sde1[2] sdd1[1](F) sdc1[0]\n      \
1953382464 blocks super 1.2 [2/1] [U_]\n      \
[=====>...............]  recovery = 27.4% (535234560/1953382464) finish=118.3min speed=199708K/sec\n      \
bitmap: 4/15 pages [16KB], 65536KB chunk\n\
\n\
md3 : active raid1 sdf1[1] sdg1[0]\n      \
104792064 blocks super 1.2 [2/2] [UU]\n      \
resync=PENDING\n\
\n\
md4 : active raid0 sdh1[1] sdi1[0]\n      \
209584128 blocks super 1.2 512k chunks\n\
\n\
md5 : inactive sdj1[1](S) sdk1[0](S)\n      \
2095104 blocks super 1.2\n\
\n\
md6 : active raid6 sdl[5] sdm[4] sdn[3] sdo[2] sdp[1] sdq[0]\n      \
3906765824 blocks super 1.2 level 6, 512k chunk, algorithm 2 [6/6] [UUUUUU]\n      \
[=>...................]  check =  8.8% (344521216/3906765824) finish=300.1min speed=197796K/sec\n\
\n\
unused devices: <none>\n";

    #[test]
    fn arrays_in_every_state() {
        let fx = Fixture::new();
        fx.write("proc/mdstat", MDSTAT);
        let fams = run(&fx.collector(), collect);
        let state = |device: &str, s: &str| {
            value(&fams, "node_md_state", &[("device", device), ("state", s)])
        };
        let disks = |device: &str, s: &str| {
            value(&fams, "node_md_disks", &[("device", device), ("state", s)])
        };
        let one = |family: &str, device: &str| value(&fams, family, &[("device", device)]);
        assert_eq!(state("md1", "active"), 1.0);
        assert_eq!(disks("md1", "spare"), 1.0);
        assert_eq!(disks("md1", "active"), 4.0);
        assert_eq!(one("node_md_blocks_synced", "md1"), 7501211648.0);
        assert_eq!(state("md2", "recovering"), 1.0);
        assert_eq!(state("md2", "active"), 0.0);
        assert_eq!(disks("md2", "failed"), 1.0);
        assert_eq!(disks("md2", "active"), 1.0);
        assert_eq!(one("node_md_disks_required", "md2"), 2.0);
        assert_eq!(one("node_md_blocks_synced", "md2"), 535234560.0);
        assert_eq!(state("md3", "resync"), 1.0);
        assert_eq!(one("node_md_blocks_synced", "md3"), 0.0);
        assert_eq!(disks("md4", "active"), 2.0);
        assert_eq!(one("node_md_disks_required", "md4"), 2.0);
        assert_eq!(state("md5", "inactive"), 1.0);
        assert_eq!(disks("md5", "spare"), 2.0);
        assert_eq!(disks("md5", "active"), 0.0);
        assert_eq!(state("md6", "check"), 1.0);
        assert_eq!(one("node_md_blocks_synced", "md6"), 344521216.0);
        assert_eq!(one("node_md_disks_required", "md6"), 6.0);
    }

    #[test]
    fn unreadable_arrays_fail_the_collector() {
        for text in [
            "md0 : active raid1 sda1[0]\n",
            "md0 : active raid1 sda1[0] sdb1[1]\n      garbage\n\n\n",
            "md0 : active raid1 sda1[0] sdb1[1]\n      100 blocks [2/2] [UU]\n      \
             recovery = 1.0% (1/100) finish=1.0min\n\n",
            "md0 : active raid1 sda1[0] sdb1[1]\n      100 blocks [2/2] [UU]\n      \
             recovery = 1.0% (abc/100) finish=1.0min speed=1K/sec\n\n",
        ] {
            let fx = Fixture::new();
            fx.write("proc/mdstat", text);
            assert!(
                collect(&fx.collector(), &mut Vec::new()).is_err(),
                "{text:?}"
            );
        }
    }

    #[test]
    fn empty_file_has_no_arrays() {
        let fx = Fixture::new();
        fx.write("proc/mdstat", "");
        let fams = run(&fx.collector(), collect);
        assert!(find(&fams, "node_md_state").samples.is_empty());
    }
}
