//! The node collector never panics on what it reads: every file of the fake GPU
//! server (`tests/fixtures/node-host`) is in turn replaced by random bytes, cut
//! short, or given a wrong byte, and every collector runs over the result. A
//! collector may fail (`node_scrape_collector_success 0`); the process must not.

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::{NodeCollector, NodeFlags, NodePaths};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/node-host")
}

/// Every file under `dir`, relative to it, sorted.
fn files(dir: &Path, base: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            files(&path, base, out);
        } else {
            out.push(path.strip_prefix(base).unwrap().to_path_buf());
        }
    }
}

fn copy_tree(from: &Path, to: &Path, files: &[PathBuf]) {
    for rel in files {
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from.join(rel), dest).unwrap();
    }
}

/// How a file is spoiled.
#[derive(Debug, Clone)]
enum Spoil {
    Replace(Vec<u8>),
    Truncate(prop::sample::Index),
    Overwrite(prop::sample::Index, u8),
}

fn spoil() -> impl Strategy<Value = Spoil> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..64).prop_map(Spoil::Replace),
        // Text that looks like the kernel's: digits, separators, units, signs.
        "[0-9a-fxA-F .:/\\-_\\[\\]()%kMGU\n\t]{0,80}".prop_map(|s| Spoil::Replace(s.into_bytes())),
        any::<prop::sample::Index>().prop_map(Spoil::Truncate),
        (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Spoil::Overwrite(i, b)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn a_spoiled_file_never_panics(which in any::<prop::sample::Index>(), how in spoil()) {
        let from = fixture();
        let mut all = Vec::new();
        files(&from, &from, &mut all);
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&from, dir.path(), &all);
        let target = dir.path().join(which.get(&all));
        let original = std::fs::read(&target).unwrap();
        let spoiled = match how {
            Spoil::Replace(bytes) => bytes,
            Spoil::Truncate(at) if !original.is_empty() => original[..at.index(original.len())].to_vec(),
            Spoil::Overwrite(at, byte) if !original.is_empty() => {
                let mut bytes = original.clone();
                bytes[at.index(original.len())] = byte;
                bytes
            }
            _ => Vec::new(),
        };
        std::fs::write(&target, spoiled).unwrap();
        // The flags that make collectors read more files: every reader runs.
        let flags = NodeFlags::from_pairs([
            ("collector.cpu.info", "true"),
            ("collector.cpu.info.flags-include", "."),
            ("collector.cpu.info.bugs-include", "."),
            ("collector.stat.softirq", "true"),
            ("collector.bcache.priorityStats", "true"),
            ("collector.rapl.enable-zone-label", "true"),
            ("collector.ipvs.backend-labels", "local_address,proto"),
        ])
        .unwrap();
        let node = NodeCollector::with_flags(
            NodePaths {
                proc: dir.path().join("proc"),
                sys: dir.path().join("sys"),
                root: dir.path().join("root"),
                textfile: None,
                udev_data: None,
            },
            &flags,
        )
        .unwrap();
        let families = node.collect();
        prop_assert!(families.iter().any(|f| f.name == "node_scrape_collector_success"));
    }
}
