//! `xfs`: per mounted XFS file system, the allocation, B-tree, block-mapping,
//! directory, inode-cache, read/write and vnode counters of
//! `/sys/fs/xfs/<device>/stats/stats`.
//!
//! As node_exporter 1.5 does, the global `/sys/fs/xfs/stats/stats` and
//! `/proc/fs/xfs/stat` are not read, no XFS is not an error, and a statistics file
//! that does not parse fails the collector.

use std::collections::HashMap;
use std::path::Path;

use super::{NodeCollector, Result, dir_entries_with_prefix, labels, parse_error, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

/// Exported fields: the statistics line, the field's position on it, the family
/// (after `node_xfs_`) and its HELP (node_exporter's, typos included).
const FIELDS: &[(&str, usize, &str, &str)] = &[
    (
        "extent_alloc",
        0,
        "extent_allocation_extents_allocated_total",
        "Number of extents allocated for a filesystem.",
    ),
    (
        "extent_alloc",
        1,
        "extent_allocation_blocks_allocated_total",
        "Number of blocks allocated for a filesystem.",
    ),
    (
        "extent_alloc",
        2,
        "extent_allocation_extents_freed_total",
        "Number of extents freed for a filesystem.",
    ),
    (
        "extent_alloc",
        3,
        "extent_allocation_blocks_freed_total",
        "Number of blocks freed for a filesystem.",
    ),
    (
        "abt",
        0,
        "allocation_btree_lookups_total",
        "Number of allocation B-tree lookups for a filesystem.",
    ),
    (
        "abt",
        1,
        "allocation_btree_compares_total",
        "Number of allocation B-tree compares for a filesystem.",
    ),
    (
        "abt",
        2,
        "allocation_btree_records_inserted_total",
        "Number of allocation B-tree records inserted for a filesystem.",
    ),
    (
        "abt",
        3,
        "allocation_btree_records_deleted_total",
        "Number of allocation B-tree records deleted for a filesystem.",
    ),
    (
        "blk_map",
        0,
        "block_mapping_reads_total",
        "Number of block map for read operations for a filesystem.",
    ),
    (
        "blk_map",
        1,
        "block_mapping_writes_total",
        "Number of block map for write operations for a filesystem.",
    ),
    (
        "blk_map",
        2,
        "block_mapping_unmaps_total",
        "Number of block unmaps (deletes) for a filesystem.",
    ),
    (
        "blk_map",
        3,
        "block_mapping_extent_list_insertions_total",
        "Number of extent list insertions for a filesystem.",
    ),
    (
        "blk_map",
        4,
        "block_mapping_extent_list_deletions_total",
        "Number of extent list deletions for a filesystem.",
    ),
    (
        "blk_map",
        5,
        "block_mapping_extent_list_lookups_total",
        "Number of extent list lookups for a filesystem.",
    ),
    (
        "blk_map",
        6,
        "block_mapping_extent_list_compares_total",
        "Number of extent list compares for a filesystem.",
    ),
    (
        "bmbt",
        0,
        "block_map_btree_lookups_total",
        "Number of block map B-tree lookups for a filesystem.",
    ),
    (
        "bmbt",
        1,
        "block_map_btree_compares_total",
        "Number of block map B-tree compares for a filesystem.",
    ),
    (
        "bmbt",
        2,
        "block_map_btree_records_inserted_total",
        "Number of block map B-tree records inserted for a filesystem.",
    ),
    (
        "bmbt",
        3,
        "block_map_btree_records_deleted_total",
        "Number of block map B-tree records deleted for a filesystem.",
    ),
    (
        "dir",
        0,
        "directory_operation_lookup_total",
        "Number of file name directory lookups which miss the operating systems directory name lookup cache.",
    ),
    (
        "dir",
        1,
        "directory_operation_create_total",
        "Number of times a new directory entry was created for a filesystem.",
    ),
    (
        "dir",
        2,
        "directory_operation_remove_total",
        "Number of times an existing directory entry was created for a filesystem.",
    ),
    (
        "dir",
        3,
        "directory_operation_getdents_total",
        "Number of times the directory getdents operation was performed for a filesystem.",
    ),
    (
        "ig",
        0,
        "inode_operation_attempts_total",
        "Number of times the OS looked for an XFS inode in the inode cache.",
    ),
    (
        "ig",
        1,
        "inode_operation_found_total",
        "Number of times the OS looked for and found an XFS inode in the inode cache.",
    ),
    (
        "ig",
        2,
        "inode_operation_recycled_total",
        "Number of times the OS found an XFS inode in the cache, but could not use it as it was being recycled.",
    ),
    (
        "ig",
        3,
        "inode_operation_missed_total",
        "Number of times the OS looked for an XFS inode in the cache, but did not find it.",
    ),
    (
        "ig",
        4,
        "inode_operation_duplicates_total",
        "Number of times the OS tried to add a missing XFS inode to the inode cache, but found it had already been added by another process.",
    ),
    (
        "ig",
        5,
        "inode_operation_reclaims_total",
        "Number of times the OS reclaimed an XFS inode from the inode cache to free memory for another purpose.",
    ),
    (
        "ig",
        6,
        "inode_operation_attribute_changes_total",
        "Number of times the OS explicitly changed the attributes of an XFS inode.",
    ),
    (
        "rw",
        0,
        "write_calls_total",
        "Number of write(2) system calls made to files in a filesystem.",
    ),
    (
        "rw",
        1,
        "read_calls_total",
        "Number of read(2) system calls made to files in a filesystem.",
    ),
    (
        "vnodes",
        0,
        "vnode_active_total",
        "Number of vnodes not on free lists for a filesystem.",
    ),
    (
        "vnodes",
        1,
        "vnode_allocate_total",
        "Number of times vn_alloc called for a filesystem.",
    ),
    (
        "vnodes",
        2,
        "vnode_get_total",
        "Number of times vn_get called for a filesystem.",
    ),
    (
        "vnodes",
        3,
        "vnode_hold_total",
        "Number of times vn_hold called for a filesystem.",
    ),
    (
        "vnodes",
        4,
        "vnode_release_total",
        "Number of times vn_rele called for a filesystem.",
    ),
    (
        "vnodes",
        5,
        "vnode_reclaim_total",
        "Number of times vn_reclaim called for a filesystem.",
    ),
    (
        "vnodes",
        6,
        "vnode_remove_total",
        "Number of times vn_remove called for a filesystem.",
    ),
];

/// How many values the kernel writes on each line procfs knows; other lines may
/// have any number.
fn expected_values(line: &str) -> Option<&'static [usize]> {
    Some(match line {
        "extent_alloc" | "abt" | "bmbt" | "dir" | "attr" => &[4],
        "blk_map" | "ig" => &[7],
        "trans" | "icluster" | "xpc" => &[3],
        "log" => &[5],
        "push_ail" => &[10],
        "xstrat" | "rw" => &[2],
        "vnodes" => &[7, 8],
        "buf" => &[9],
        "abtb2" | "abtc2" | "bmbt2" | "ibt2" => &[15],
        "qm" => &[8, 9],
        "debug" => &[1],
        _ => return None,
    })
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let mut families: Vec<MetricFamily> = FIELDS
        .iter()
        .map(|(_, _, name, help)| {
            MetricFamily::new(format!("node_xfs_{name}"), MetricType::Counter, *help)
        })
        .collect();
    // No XFS mounted: nothing to report, and not a failure.
    let Ok(devices) = dir_entries_with_prefix(&c.sys_path("fs/xfs"), "") else {
        return Ok(());
    };
    // Everything is parsed before anything is kept: one bad file fails the collector.
    for (device, dir) in devices {
        let path = dir.join("stats/stats");
        if std::fs::symlink_metadata(&path).is_err() {
            continue;
        }
        let stats = parse(&path, &read_file(&path)?)?;
        for ((line, index, _, _), family) in FIELDS.iter().zip(families.iter_mut()) {
            let v = stats
                .get(*line)
                .and_then(|values| values.get(*index))
                .copied()
                .unwrap_or(0);
            family.push(labels([("device", &device)]), f64::from(v));
        }
    }
    out.extend(families);
    Ok(())
}

/// The statistics file's lines by name. Every value but `xpc`'s (64-bit byte counts)
/// is a 32-bit counter.
fn parse(path: &Path, text: &str) -> Result<HashMap<String, Vec<u32>>> {
    let mut stats = HashMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [name, values @ ..] = &fields[..] else {
            continue;
        };
        if values.is_empty() {
            continue;
        }
        if let Some(counts) = expected_values(name) {
            if !counts.contains(&values.len()) {
                return Err(parse_error(
                    path,
                    format!("{name}: {} values, expected {counts:?}", values.len()),
                ));
            }
        }
        if *name == "xpc" {
            if values.iter().any(|v| v.parse::<u64>().is_err()) {
                return Err(parse_error(path, format!("bad xpc line {line:?}")));
            }
            continue;
        }
        let parsed = values
            .iter()
            .map(|v| v.parse::<u32>())
            .collect::<std::result::Result<Vec<u32>, _>>()
            .map_err(|_| parse_error(path, format!("bad line {line:?}")))?;
        stats.insert((*name).to_string(), parsed);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn counters_per_device_missing_lines_zero() {
        let fx = Fixture::new();
        fx.write(
            "sys/fs/xfs/md1/stats/stats",
            "extent_alloc 1 2 3 4\nrw 5 6\nvnodes 1 2 3 4 5 6 7 0\nrmapbt 0 0 0\n\
             xpc 3779617001472 3016120672256 1562109968384\ndefer_relog 0\n",
        )
        .write("sys/fs/xfs/stats/stats", "rw 99 99\n")
        .write("sys/fs/xfs/sda1/other", "");
        let fams = run(&fx.collector(), collect);
        let md1 = [("device", "md1")];
        assert_eq!(value(&fams, "node_xfs_write_calls_total", &md1), 5.0);
        assert_eq!(value(&fams, "node_xfs_read_calls_total", &md1), 6.0);
        assert_eq!(
            value(&fams, "node_xfs_extent_allocation_blocks_freed_total", &md1),
            4.0
        );
        assert_eq!(value(&fams, "node_xfs_vnode_remove_total", &md1), 7.0);
        assert_eq!(
            value(&fams, "node_xfs_inode_operation_found_total", &md1),
            0.0
        );
        assert_eq!(fams.len(), 39);
        assert!(
            fams.iter().all(|f| f.samples.len() == 1),
            "global file not read"
        );
    }

    #[test]
    fn no_xfs_is_not_a_failure() {
        let fx = Fixture::new();
        let fams = run(&fx.collector(), collect);
        assert!(fams.is_empty());
    }

    #[test]
    fn bad_lines_fail_the_collector() {
        for text in ["rw 4294967296 1\n", "ig 1 2 3 4 5 6\n", "newthing 1 x\n"] {
            let fx = Fixture::new();
            fx.write("sys/fs/xfs/md1/stats/stats", text);
            assert!(
                collect(&fx.collector(), &mut Vec::new()).is_err(),
                "{text:?}"
            );
        }
    }
}
