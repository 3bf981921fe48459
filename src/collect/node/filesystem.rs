//! `filesystem`: size, free and available bytes and inode counts per mounted
//! filesystem, from the mount table of PID 1 (`/proc/1/mounts`, or `/proc/mounts`
//! when that is unreadable) and `statfs(2)`, with node_exporter's mount-point and
//! filesystem-type excludes.
//!
//! As in node_exporter, each `statfs` runs on a helper thread with a timeout
//! (`--collector.filesystem.mount-timeout`, 5 s by default): a mount
//! point whose call hangs (a dead NFS server) reports `device_error` 1 once, and is
//! then skipped until the hung call returns.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{RecvTimeoutError, sync_channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use super::{NodeCollector, NodeError, Result, labels, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

/// What `statfs` says about one filesystem.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    size: f64,
    free: f64,
    avail: f64,
    files: f64,
    files_free: f64,
}

/// Mount points whose `statfs` has not returned yet; shared with the helper threads.
#[derive(Debug, Default, Clone)]
pub(super) struct StuckMounts(Arc<Mutex<HashSet<String>>>);

impl StuckMounts {
    fn lock(&self) -> MutexGuard<'_, HashSet<String>> {
        // A panic while holding this lock cannot leave the set inconsistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

const LABELS: [&str; 3] = ["device", "fstype", "mountpoint"];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let text = match read_file(&c.proc_path("1/mounts")) {
        Ok(t) => t,
        Err(_) => read_file(&c.proc_path("mounts"))?,
    };
    let mut size = fam("size_bytes", "Filesystem size in bytes.");
    let mut free = fam("free_bytes", "Filesystem free space in bytes.");
    let mut avail = fam(
        "avail_bytes",
        "Filesystem space available to non-root users in bytes.",
    );
    let mut files = fam("files", "Filesystem total file nodes.");
    let mut files_free = fam("files_free", "Filesystem total free file nodes.");
    let mut readonly = fam("readonly", "Filesystem read-only status.");
    let mut device_error = fam(
        "device_error",
        "Whether an error occurred while getting statistics for the given device.",
    );
    let root_prefix = c.paths.root.to_string_lossy();
    let root_prefix = root_prefix.trim_end_matches('/');
    let mut seen: Vec<[String; 3]> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(device), Some(raw_mp), Some(fstype), Some(options)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let mp = unescape(raw_mp);
        // Under --path.rootfs, mount points are reported relative to it.
        let mountpoint = match mp.strip_prefix(root_prefix) {
            Some(rest) if !root_prefix.is_empty() && (rest.is_empty() || rest.starts_with('/')) => {
                if rest.is_empty() {
                    "/".to_string()
                } else {
                    rest.to_string()
                }
            }
            _ => mp.clone(),
        };
        if c.flags.mount_points_exclude.is_match(&mountpoint)
            || c.flags.fs_types_exclude.is_match(fstype)
        {
            continue;
        }
        let key = [device.to_string(), fstype.to_string(), mountpoint.clone()];
        if seen.contains(&key) {
            continue;
        }
        let l = labels([
            (LABELS[0], device),
            (LABELS[1], fstype),
            (LABELS[2], mountpoint.as_str()),
        ]);
        let ro = options.split(',').any(|o| o == "ro");
        seen.push(key);
        if c.stuck_mounts.lock().contains(&mountpoint) {
            tracing::debug!(mountpoint = %mountpoint, "skipping stuck mount point");
            continue;
        }
        match statfs_with_timeout(
            &c.stuck_mounts,
            c.root_path(&mountpoint),
            &mountpoint,
            c.flags.mount_timeout,
        ) {
            Ok(s) => {
                device_error.push(l.clone(), 0.0);
                size.push(l.clone(), s.size);
                free.push(l.clone(), s.free);
                avail.push(l.clone(), s.avail);
                files.push(l.clone(), s.files);
                files_free.push(l.clone(), s.files_free);
                // node_exporter 1.5 exposes read-only status only for mounts it could
                // stat (later versions expose it for all).
                readonly.push(l, if ro { 1.0 } else { 0.0 });
            }
            Err(err) => {
                tracing::debug!(mountpoint = %mountpoint, error = %err, "statfs failed");
                device_error.push(l, 1.0);
            }
        }
    }
    out.extend([size, free, avail, files, files_free, readonly, device_error]);
    Ok(())
}

fn fam(suffix: &str, help: &str) -> MetricFamily {
    MetricFamily::new(format!("node_filesystem_{suffix}"), MetricType::Gauge, help)
}

/// The mount table escapes space and tab as octal; node_exporter undoes those two.
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    s.replace("\\040", " ").replace("\\011", "\t")
}

/// `statfs` on a helper thread; on timeout the mount point joins `stuck` until the
/// call returns.
fn statfs_with_timeout(
    stuck: &StuckMounts,
    path: PathBuf,
    mountpoint: &str,
    timeout: Duration,
) -> Result<Stats> {
    let (tx, rx) = sync_channel(1);
    let thread_stuck = stuck.clone();
    let mp = mountpoint.to_string();
    let thread_path = path.clone();
    let spawned = std::thread::Builder::new()
        .name("odin-statfs".to_string())
        .stack_size(64 * 1024)
        .spawn(move || {
            let r = statfs(&thread_path);
            // Remove and send under the lock, so the caller either sees the result
            // or has already marked the mount point stuck (and we unmark it here).
            let mut set = thread_stuck.lock();
            set.remove(&mp);
            let _ = tx.send(r);
        });
    if spawned.is_err() {
        // No thread to be had: do it inline rather than not at all.
        return statfs(&path);
    }
    match rx.recv_timeout(timeout) {
        Ok(r) => r,
        Err(RecvTimeoutError::Disconnected) => Err(timed_out()),
        Err(RecvTimeoutError::Timeout) => {
            let mut set = stuck.lock();
            if let Ok(r) = rx.try_recv() {
                return r;
            }
            set.insert(mountpoint.to_string());
            Err(timed_out())
        }
    }
}

fn timed_out() -> NodeError {
    NodeError::Syscall {
        call: "statfs",
        source: std::io::Error::new(std::io::ErrorKind::TimedOut, "statfs timed out"),
    }
}

fn statfs(path: &Path) -> Result<Stats> {
    let c_path = CString::new(path.as_os_str().as_bytes()).map_err(|_| NodeError::Parse {
        path: path.to_path_buf(),
        what: "mount point contains NUL".to_string(),
    })?;
    // SAFETY: an all-zero `statfs` is a valid value of this plain C struct.
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a valid NUL-terminated string and `buf` a writable struct
    // that outlives the call.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), &mut buf) };
    if rc != 0 {
        return Err(NodeError::Syscall {
            call: "statfs",
            source: std::io::Error::last_os_error(),
        });
    }
    // node_exporter multiplies block counts by f_bsize.
    let bsize = buf.f_bsize as f64;
    Ok(Stats {
        size: buf.f_blocks as f64 * bsize,
        free: buf.f_bfree as f64 * bsize,
        avail: buf.f_bavail as f64 * bsize,
        files: buf.f_files as f64,
        files_free: buf.f_ffree as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;
    use crate::collect::node::NodePaths;

    #[test]
    fn unescape_space_and_tab() {
        assert_eq!(unescape("/mnt/a\\040b\\011c"), "/mnt/a b\tc");
        assert_eq!(unescape("/plain"), "/plain");
    }

    #[test]
    fn filesystem_filters_dedups_and_reports_errors() {
        let fx = Fixture::new();
        // The fixture root holds a real directory for "/" so statfs succeeds; the
        // missing "/missing" mount point gives a device error.
        std::fs::create_dir_all(fx.dir.path().join("root")).unwrap();
        fx.write(
            "proc/1/mounts",
            "/dev/sda1 / ext4 rw,relatime 0 0\n\
/dev/sda1 / ext4 rw,relatime 0 0\n\
proc /proc proc rw 0 0\n\
sysfs /sys sysfs rw 0 0\n\
tmpfs /run/credentials/x tmpfs ro 0 0\n\
overlay /var/lib/foo overlay rw 0 0\n\
/dev/sdb1 /missing xfs ro,noatime 0 0\n",
        );
        let c = fx.collector();
        let fams = run(&c, collect);
        let size = find(&fams, "node_filesystem_size_bytes");
        assert_eq!(size.samples.len(), 1);
        assert_eq!(
            size.samples[0].labels,
            labels([
                ("device", "/dev/sda1"),
                ("fstype", "ext4"),
                ("mountpoint", "/")
            ])
        );
        assert!(size.samples[0].value > 0.0);
        let err = find(&fams, "node_filesystem_device_error");
        assert_eq!(err.samples.len(), 2);
        assert_eq!(
            value(
                &fams,
                "node_filesystem_device_error",
                &[("mountpoint", "/missing")]
            ),
            1.0
        );
        // No read-only status for a mount that could not be stat'ed (as in 1.5).
        assert_eq!(find(&fams, "node_filesystem_readonly").samples.len(), 1);
        assert_eq!(
            value(&fams, "node_filesystem_readonly", &[("mountpoint", "/")]),
            0.0
        );
    }

    #[test]
    fn statfs_of_real_root_matches_libc_units() {
        let c = crate::collect::node::NodeCollector::new(NodePaths::default()).unwrap();
        let s = statfs(&c.root_path("/")).unwrap();
        assert!(s.size >= s.free && s.free >= s.avail);
    }

    #[test]
    fn statfs_on_helper_thread_returns_and_leaves_nothing_stuck() {
        let stuck = StuckMounts::default();
        let s = statfs_with_timeout(
            &stuck,
            PathBuf::from("/"),
            "/",
            crate::collect::node::DEFAULT_MOUNT_TIMEOUT,
        )
        .unwrap();
        assert!(s.size > 0.0);
        assert!(stuck.lock().is_empty());
    }

    #[test]
    fn timed_out_statfs_marks_mount_stuck_until_it_returns() {
        let stuck = StuckMounts::default();
        // A zero timeout usually expires before the helper thread answers; either
        // way the set must be empty once the thread is done.
        let r = statfs_with_timeout(&stuck, PathBuf::from("/"), "/x", Duration::ZERO);
        if r.is_err() {
            for _ in 0..200 {
                if stuck.lock().is_empty() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        assert!(stuck.lock().is_empty());
    }

    #[test]
    fn stuck_mount_point_is_skipped() {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.dir.path().join("root")).unwrap();
        fx.write(
            "proc/1/mounts",
            "/dev/vda / ext4 rw 0 0\nnfs:/x /nfs nfs4 rw 0 0\n",
        );
        let c = fx.collector();
        c.stuck_mounts.lock().insert("/nfs".to_string());
        let fams = run(&c, collect);
        let err = find(&fams, "node_filesystem_device_error");
        assert_eq!(err.samples.len(), 1);
        assert_eq!(err.samples[0].labels[2].1, "/");
    }

    #[test]
    fn falls_back_to_proc_mounts() {
        let fx = Fixture::new();
        std::fs::create_dir_all(fx.dir.path().join("root")).unwrap();
        fx.write("proc/mounts", "/dev/vda / ext4 rw 0 0\n");
        let fams = run(&fx.collector(), collect);
        assert_eq!(find(&fams, "node_filesystem_avail_bytes").samples.len(), 1);
    }
}
