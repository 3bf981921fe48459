//! Issue 14: a full disk. Writes fail with a clear error (507) and nothing is
//! acknowledged that is not durable; what was stored before stays intact; ingestion
//! resumes by itself once space returns. The data directory lives on a small tmpfs
//! mounted for the test (CI runs as root; elsewhere the test says why it skips).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{Odin, TestSeries, poll_until};

/// A tmpfs of `mib` MiB mounted on a fresh directory; unmounted on drop.
struct SmallDisk {
    dir: PathBuf,
    _parent: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(mib: u32) -> Option<SmallDisk> {
        let parent = tempfile::tempdir().ok()?;
        let dir = parent.path().join("disk");
        std::fs::create_dir(&dir).ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(&dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(SmallDisk {
            dir,
            _parent: parent,
        })
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

/// Fills the file system holding `dir` with one file; returns its path.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut f = std::fs::File::create(&path).unwrap();
    let block = vec![0xa5u8; 64 << 10];
    while f.write_all(&block).is_ok() {}
    // Whatever is left below one block.
    while f.write_all(&[0u8]).is_ok() {}
    let _ = f.sync_all();
    path
}

fn batch(t: i64, tag: &str) -> Vec<TestSeries> {
    (0..50)
        .map(|i| {
            TestSeries::new(
                &[
                    ("__name__", "disk_test"),
                    ("i", &i.to_string()),
                    ("tag", tag),
                ],
                vec![(t, i as f64)],
            )
        })
        .collect()
}

fn count(odin: &Odin, tag: &str) -> String {
    let q = format!("count(disk_test{{tag=\"{tag}\"}})");
    let (_, body) = odin.get(&format!(
        "/api/v1/query?query={}",
        form_urlencoded::byte_serialize(q.as_bytes()).collect::<String>()
    ));
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"][0]["value"][1]
        .as_str()
        .unwrap_or("0")
        .to_string()
}

#[test]
fn a_full_disk_refuses_writes_clearly_and_ingestion_resumes_when_space_returns() {
    let Some(disk) = SmallDisk::mount(16) else {
        eprintln!("cannot mount a tmpfs (needs root): skipping the disk-full test");
        return;
    };
    let data = disk.dir.join("data");
    let odin = Odin::start(&data, &[]);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let (code, body) = odin.write(&batch(now - 3000, "before"));
    assert_eq!(code, 204, "{body}");

    let filler = fill(&disk.dir);
    // Records still fit in the WAL page already allocated; once that is full, the
    // disk refuses. Every write is either acknowledged (and then durable) or refused.
    let (mut acknowledged, mut refused) = (Vec::new(), Vec::new());
    let mut t = now - 2000;
    for k in 0..400 {
        t += 1;
        let tag = format!("full{k}");
        let (code, body) = odin.write(&batch(t, &tag));
        if code == 204 {
            acknowledged.push(tag);
        } else {
            refused.push((tag, code, body));
        }
        if refused.len() >= 5 {
            break;
        }
    }
    assert!(!refused.is_empty(), "nothing was refused on a full disk");
    assert!(
        refused.iter().all(|(_, c, _)| *c == 507),
        "a full disk answers 507: {:?}",
        &refused[..refused.len().min(3)]
    );
    assert!(
        refused[0].2.contains("space"),
        "the answer says why: {}",
        refused[0].2
    );
    assert_eq!(odin.get("/-/healthy").0, 200);
    assert_eq!(count(&odin, "before"), "50");
    for (tag, _, _) in &refused {
        assert_eq!(count(&odin, tag), "0", "refused batch {tag} is visible");
    }

    std::fs::remove_file(&filler).unwrap();
    let resumed = poll_until(Duration::from_secs(20), || {
        t += 1;
        odin.write(&batch(t, "after")).0 == 204
    });
    assert!(resumed, "ingestion did not resume once space returned");
    assert_eq!(count(&odin, "after"), "50");

    // Nothing acknowledged was lost: a restart replays both batches.
    assert_eq!(odin.stop().code(), Some(0));
    let odin = Odin::start(&data, &[]);
    assert_eq!(count(&odin, "before"), "50");
    assert_eq!(count(&odin, "after"), "50");
    for tag in &acknowledged {
        assert_eq!(count(&odin, tag), "50", "acknowledged batch {tag} lost");
    }
    for (tag, _, _) in &refused {
        assert_eq!(count(&odin, tag), "0", "refused batch {tag} replayed");
    }
}
