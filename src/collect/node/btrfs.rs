//! `btrfs`: per btrfs file system, from `/sys/fs/btrfs/<uuid>`: label, global
//! reserve, space reserved, allocated and used per block-group type (data,
//! metadata, system) and profile (single, dup, raid1, …), and each device's size.
//!
//! Read as procfs 0.8 reads it for node_exporter 1.5: a value that is missing or not
//! a number is 0, and a file system is only given up when its `allocation/system`
//! cannot be read. node_exporter 1.5 takes the device series of a *mounted* file
//! system from the btrfs ioctls instead (adding `btrfs_dev_uuid`,
//! `node_btrfs_device_unused_bytes` and `node_btrfs_device_errors_total`); ODIN
//! reads sysfs only (docs/node-collector.md).

use std::io::ErrorKind;
use std::path::PathBuf;

use super::{NodeCollector, NodeError, Result, dir_entries_with_prefix, labels, read_sysfs_value};
use crate::exposition::family::{MetricFamily, MetricType};

const BLOCK_GROUP_TYPES: &[&str] = &["data", "metadata", "system"];

/// Reads one file system's attributes. The first error other than a missing file
/// is kept, and values read after it are 0 (procfs's reader).
struct Reader {
    dir: PathBuf,
    error: Option<NodeError>,
}

impl Reader {
    fn new(dir: PathBuf) -> Self {
        Self { dir, error: None }
    }

    /// An attribute's text; "" when missing or unreadable.
    fn text(&mut self, rel: &str) -> String {
        let path = self.dir.join(rel);
        match read_sysfs_value(&path) {
            Ok(v) => v,
            Err(e) if e.kind() == ErrorKind::NotFound => String::new(),
            Err(source) => {
                self.error.get_or_insert(NodeError::Io { path, source });
                String::new()
            }
        }
    }

    /// An attribute as a number: 0 when missing, not a number, or after an error.
    fn value(&mut self, rel: &str) -> u64 {
        if self.error.is_some() {
            return 0;
        }
        let text = self.text(rel);
        if !text.bytes().all(|b| b.is_ascii_digit()) {
            return 0;
        }
        text.parse().unwrap_or(0)
    }

    /// A directory's entries by name; none (and the error kept) when unreadable.
    fn list(&mut self, rel: &str) -> Vec<(String, PathBuf)> {
        let path = self.dir.join(rel);
        match std::fs::read_dir(&path) {
            Ok(rd) => {
                let mut v: Vec<(String, PathBuf)> = rd
                    .filter_map(|e| e.ok())
                    .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                    .collect();
                v.sort();
                v
            }
            Err(source) => {
                self.error.get_or_insert(NodeError::Io { path, source });
                Vec::new()
            }
        }
    }
}

/// One profile of a block-group type: its name, bytes allocated and used.
struct Layout {
    mode: String,
    total: u64,
    used: u64,
}

/// One block-group type's space.
struct Allocation {
    reserved: u64,
    layouts: Vec<Layout>,
}

struct FileSystem {
    uuid: String,
    label: String,
    devices: Vec<(String, u64)>,
    global_rsv_size: u64,
    allocations: Vec<Allocation>,
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    // No btrfs (or none mounted): nothing to report, not a failure.
    let entries = dir_entries_with_prefix(&c.sys_path("fs/btrfs"), "").unwrap_or_default();
    let mut file_systems = Vec::new();
    for (name, dir) in entries.into_iter().filter(|(n, _)| n.contains('-')) {
        file_systems.push(read_file_system(&name, dir)?);
    }
    let gauge = |name: &str, help: &str| MetricFamily::new(name, MetricType::Gauge, help);
    let mut info = gauge("node_btrfs_info", "Filesystem information");
    let mut rsv = gauge(
        "node_btrfs_global_rsv_size_bytes",
        "Size of global reserve.",
    );
    let mut reserved = gauge(
        "node_btrfs_reserved_bytes",
        "Amount of space reserved for a data type",
    );
    let mut used = gauge(
        "node_btrfs_used_bytes",
        "Amount of used space by a layout/data type",
    );
    let mut size = gauge(
        "node_btrfs_size_bytes",
        "Amount of space allocated for a layout/data type",
    );
    let mut ratio = gauge(
        "node_btrfs_allocation_ratio",
        "Data allocation ratio for a layout/data type",
    );
    let mut device_size = gauge(
        "node_btrfs_device_size_bytes",
        "Size of a device that is part of the filesystem.",
    );
    for fs in &file_systems {
        let uuid = fs.uuid.as_str();
        info.push(labels([("uuid", uuid), ("label", &fs.label)]), 1.0);
        rsv.push(labels([("uuid", uuid)]), fs.global_rsv_size as f64);
        for (device, bytes) in &fs.devices {
            device_size.push(labels([("uuid", uuid), ("device", device)]), *bytes as f64);
        }
        for (block_group_type, a) in BLOCK_GROUP_TYPES.iter().zip(&fs.allocations) {
            reserved.push(
                labels([("uuid", uuid), ("block_group_type", block_group_type)]),
                a.reserved as f64,
            );
            for l in &a.layouts {
                let l_labels = labels([
                    ("uuid", uuid),
                    ("block_group_type", block_group_type),
                    ("mode", &l.mode),
                ]);
                used.push(l_labels.clone(), l.used as f64);
                size.push(l_labels.clone(), l.total as f64);
                ratio.push(l_labels, allocation_ratio(&l.mode, fs.devices.len()));
            }
        }
    }
    out.extend([info, rsv, reserved, used, size, ratio, device_size]);
    Ok(())
}

fn read_file_system(name: &str, dir: PathBuf) -> Result<FileSystem> {
    let mut r = Reader::new(dir);
    let mut devices = Vec::new();
    for (device, _) in r.list("devices") {
        // sysfs counts 512-byte sectors whatever the device's block size.
        let sectors = r.value(&format!("devices/{device}/size"));
        devices.push((device, sectors.wrapping_mul(512)));
    }
    let label = r.text("label");
    let metadata_uuid = r.text("metadata_uuid");
    r.list("features");
    let global_rsv_size = r.value("allocation/global_rsv_size");
    let mut allocations = Vec::new();
    for block_group_type in BLOCK_GROUP_TYPES {
        // Each type is read afresh; only the last one's (system's) error stands,
        // as in procfs.
        let mut sub = Reader::new(r.dir.clone());
        let base = format!("allocation/{block_group_type}");
        let reserved = sub.value(&format!("{base}/bytes_reserved"));
        let mut layouts = Vec::new();
        for (mode, path) in sub.list(&base) {
            // Profiles are directories; a link is not one.
            if !std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            layouts.push(Layout {
                total: sub.value(&format!("{base}/{mode}/total_bytes")),
                used: sub.value(&format!("{base}/{mode}/used_bytes")),
                mode,
            });
        }
        r.error = sub.error;
        allocations.push(Allocation { reserved, layouts });
    }
    if let Some(e) = r.error {
        return Err(e);
    }
    Ok(FileSystem {
        uuid: if metadata_uuid.is_empty() {
            name.to_string()
        } else {
            metadata_uuid
        },
        label,
        devices,
        global_rsv_size,
        allocations,
    })
}

/// Bytes of disk per byte of data for a profile on `devices` devices; 0 for a
/// profile procfs 0.8 does not know (raid1c3, raid1c4).
fn allocation_ratio(mode: &str, devices: usize) -> f64 {
    let n = devices as f64;
    match mode {
        "single" | "raid0" => 1.0,
        "dup" | "raid1" | "raid10" => 2.0,
        // Too few devices (the list could not be read) gives what procfs computes:
        // +Inf, -0 or -1.
        "raid5" => n / (n - 1.0),
        "raid6" => n / (n - 2.0),
        _ => 0.0,
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    const FS: &str = "sys/fs/btrfs/7e9b1f5c-3a62-4d0e-9c8b-2f41d6a0c513";

    fn file_system(fx: &Fixture) {
        fx.write("sys/fs/btrfs/features/free_space_tree", "0\n")
            .write(&format!("{FS}/label"), "scratch-data\n")
            .write(&format!("{FS}/devices/nvme2n1/size"), "7501476528\n")
            .write(&format!("{FS}/devices/nvme3n1/size"), "7501476528\n")
            .write(&format!("{FS}/features/no_holes"), "0\n")
            .write(&format!("{FS}/allocation/global_rsv_size"), "536870912\n")
            .write(&format!("{FS}/allocation/data/bytes_reserved"), "4096\n")
            .write(
                &format!("{FS}/allocation/data/single/total_bytes"),
                "3032246960128\n",
            )
            .write(
                &format!("{FS}/allocation/data/single/used_bytes"),
                "2984218669056\n",
            )
            .write(
                &format!("{FS}/allocation/metadata/raid1/total_bytes"),
                "8589934592\n",
            )
            .write(
                &format!("{FS}/allocation/metadata/raid1/used_bytes"),
                "abc\n",
            )
            .write(
                &format!("{FS}/allocation/system/raid5/total_bytes"),
                "33554432\n",
            );
    }

    #[test]
    fn allocation_per_type_and_profile() {
        let fx = Fixture::new();
        file_system(&fx);
        let fams = run(&fx.collector(), collect);
        let uuid = ("uuid", "7e9b1f5c-3a62-4d0e-9c8b-2f41d6a0c513");
        assert_eq!(
            value(&fams, "node_btrfs_info", &[uuid, ("label", "scratch-data")]),
            1.0
        );
        assert_eq!(
            value(
                &fams,
                "node_btrfs_device_size_bytes",
                &[("device", "nvme2n1")]
            ),
            7501476528.0 * 512.0
        );
        assert_eq!(
            value(&fams, "node_btrfs_global_rsv_size_bytes", &[uuid]),
            536870912.0
        );
        assert_eq!(
            value(
                &fams,
                "node_btrfs_reserved_bytes",
                &[("block_group_type", "data")]
            ),
            4096.0
        );
        assert_eq!(
            value(
                &fams,
                "node_btrfs_reserved_bytes",
                &[("block_group_type", "system")]
            ),
            0.0
        );
        let data = [("block_group_type", "data"), ("mode", "single")];
        assert_eq!(
            value(&fams, "node_btrfs_used_bytes", &data),
            2984218669056.0
        );
        assert_eq!(value(&fams, "node_btrfs_allocation_ratio", &data), 1.0);
        // Not a number: 0.
        assert_eq!(
            value(&fams, "node_btrfs_used_bytes", &[("mode", "raid1")]),
            0.0
        );
        assert_eq!(
            value(&fams, "node_btrfs_allocation_ratio", &[("mode", "raid5")]),
            2.0
        );
    }

    #[test]
    fn only_an_unreadable_system_allocation_fails() {
        let fx = Fixture::new();
        file_system(&fx);
        std::fs::remove_dir_all(fx.dir.path().join(FS).join("allocation/data")).unwrap();
        run(&fx.collector(), collect);
        std::fs::remove_dir_all(fx.dir.path().join(FS).join("allocation/system")).unwrap();
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }

    #[test]
    fn no_btrfs_is_not_a_failure() {
        let fx = Fixture::new();
        fx.write("sys/fs/btrfs/features/free_space_tree", "0\n");
        let fams = run(&fx.collector(), collect);
        assert!(fams.iter().all(|f| f.samples.is_empty()));
    }

    #[test]
    fn ratios() {
        assert_eq!(allocation_ratio("raid6", 4), 2.0);
        assert_eq!(allocation_ratio("raid6", 2), f64::INFINITY);
        assert_eq!(allocation_ratio("raid1c3", 3), 0.0);
        assert_eq!(allocation_ratio("dup", 1), 2.0);
    }
}
