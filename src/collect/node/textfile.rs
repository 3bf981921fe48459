//! `textfile`: metrics other programs write as `*.prom` files (the text exposition
//! format) into a directory (`collectors.node.textfile_directory`, node_exporter's
//! `--collector.textfile.directory`), exposed with the node's own.
//!
//! As node_exporter 1.5: the files are read at every scrape, in name order; a file
//! that cannot be read or parsed, or that carries client-side timestamps, is skipped
//! whole and sets `node_textfile_scrape_error` to 1; each file read is stamped in
//! `node_textfile_mtime_seconds{file}`. A family in several files is one family (of
//! one type); a family that collides with a built-in one, or with another file's of a
//! different type, is refused with its file. Without a directory the collector
//! reports `node_textfile_scrape_error 0` and nothing else.

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{NodeCollector, Result, labels, single};
use crate::exposition::family::{MetricFamily, MetricType};
use crate::exposition::format::{Entry, Format, Parser, parse_families};

/// A file larger than this is refused: the collector reads files at every scrape.
const MAX_FILE_BYTES: u64 = 64 << 20;

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let mut error = false;
    if let Some(dir) = &c.paths.textfile {
        let mut mtimes = MetricFamily::new(
            "node_textfile_mtime_seconds",
            MetricType::Gauge,
            "Unixtime mtime of textfiles successfully read.",
        );
        let mut read: Vec<MetricFamily> = Vec::new();
        match prom_files(dir) {
            Ok(files) => {
                for path in files {
                    match read_file_families(&path) {
                        Ok((families, mtime)) => {
                            if let Err(why) = merge(&mut read, families, out) {
                                tracing::warn!(file = %path.display(), %why, "textfile collector: file skipped");
                                error = true;
                                continue;
                            }
                            mtimes.push(labels([("file", &path.to_string_lossy())]), mtime);
                        }
                        Err(why) => {
                            tracing::warn!(file = %path.display(), %why, "textfile collector: file skipped");
                            error = true;
                        }
                    }
                }
            }
            Err(why) => {
                tracing::warn!(directory = %dir.display(), %why, "textfile collector: cannot read the directory");
                error = true;
            }
        }
        out.extend(read);
        if !mtimes.samples.is_empty() {
            out.push(mtimes);
        }
    }
    out.push(single(
        "node_textfile_scrape_error",
        MetricType::Gauge,
        "1 if there was an error opening or reading a file, 0 otherwise",
        if error { 1.0 } else { 0.0 },
    ));
    Ok(())
}

/// The `*.prom` files of `dir`, sorted by name.
fn prom_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "prom") && p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// One file's families and its modification time (Unix seconds).
fn read_file_families(path: &Path) -> std::result::Result<(Vec<MetricFamily>, f64), String> {
    // Opened without blocking (a FIFO put in a file's place must not hang the scrape),
    // checked on the handle, and read no further than the bound.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| e.to_string())?;
    let meta = file.metadata().map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err("not a regular file".into());
    }
    let mut body = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut body)
        .map_err(|e| e.to_string())?;
    if body.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("larger than {MAX_FILE_BYTES} bytes"));
    }
    // Timestamps would let a stale file write into the past: node_exporter refuses them.
    let mut parser = Parser::new(Format::Text, &body);
    while let Some(entry) = parser.next().map_err(|e| e.to_string())? {
        if let Entry::Series(series) = entry
            && series.timestamp_ms.is_some()
        {
            return Err("contains unsupported client-side timestamps, skipping entire file".into());
        }
    }
    let mut families = parse_families(Format::Text, &body).map_err(|e| e.to_string())?;
    for family in &mut families {
        if family.help.is_empty() {
            family.help = format!("Metric read from {}", path.display());
        }
    }
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0.0, |d| d.as_secs_f64());
    Ok((families, mtime))
}

/// Adds one file's families to those read so far, all or nothing. `built_in` holds
/// the other collectors' families (the textfile collector runs last).
fn merge(
    read: &mut Vec<MetricFamily>,
    families: Vec<MetricFamily>,
    built_in: &[MetricFamily],
) -> std::result::Result<(), String> {
    for family in &families {
        // The families the node collector writes after the collectors run.
        let own = [
            "node_textfile_scrape_error",
            "node_textfile_mtime_seconds",
            "node_scrape_collector_success",
            "node_scrape_collector_duration_seconds",
        ]
        .contains(&family.name.as_str());
        if own || built_in.iter().any(|b| b.name == family.name) {
            return Err(format!("{} collides with a built-in family", family.name));
        }
        if let Some(seen) = read.iter().find(|r| r.name == family.name)
            && seen.kind != family.kind
        {
            return Err(format!(
                "{} is a {} here and a {} in an earlier file",
                family.name,
                family.kind.as_str(),
                seen.kind.as_str()
            ));
        }
    }
    for family in families {
        match read.iter_mut().find(|r| r.name == family.name) {
            Some(seen) => seen.samples.extend(family.samples),
            None => read.push(family),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::NodeCollector;
    use super::super::test_util::*;
    use super::*;

    fn collector(fx: &Fixture, dir: Option<&str>) -> NodeCollector {
        let mut paths = fx.paths();
        paths.textfile = dir.map(|d| fx.dir.path().join(d));
        NodeCollector::new(paths).unwrap()
    }

    #[test]
    fn without_a_directory_only_the_error_gauge() {
        let fx = Fixture::new();
        let fams = run(&collector(&fx, None), collect);
        assert_eq!(fams.len(), 1);
        assert_eq!(value(&fams, "node_textfile_scrape_error", &[]), 0.0);
    }

    #[test]
    fn files_are_read_merged_and_stamped() {
        let fx = Fixture::new();
        fx.write(
            "text/apt.prom",
            "# HELP apt_upgrades_pending Apt packages pending updates.\n# TYPE apt_upgrades_pending gauge\napt_upgrades_pending{arch=\"amd64\"} 3\n",
        );
        fx.write(
            "text/gpu_burn.prom",
            "# TYPE apt_upgrades_pending gauge\napt_upgrades_pending{arch=\"arm64\"} 1\nburn_in_passed 1\n",
        );
        fx.write("text/notes.txt", "not a metric file\n");
        let fams = run(&collector(&fx, Some("text")), collect);
        assert_eq!(value(&fams, "node_textfile_scrape_error", &[]), 0.0);
        assert_eq!(
            value(&fams, "apt_upgrades_pending", &[("arch", "amd64")]),
            3.0
        );
        assert_eq!(
            value(&fams, "apt_upgrades_pending", &[("arch", "arm64")]),
            1.0
        );
        let burn = find(&fams, "burn_in_passed");
        assert!(burn.help.starts_with("Metric read from "), "{}", burn.help);
        assert_eq!(find(&fams, "node_textfile_mtime_seconds").samples.len(), 2);
        assert!(value(&fams, "node_textfile_mtime_seconds", &[]) > 1.6e9);
    }

    #[test]
    fn a_bad_file_is_skipped_whole_and_flagged() {
        let fx = Fixture::new();
        fx.write("text/a_good.prom", "good 1\n");
        fx.write("text/b_broken.prom", "broken{ 1\n");
        fx.write("text/c_stamped.prom", "stamped 1 1700000000000\n");
        fx.write(
            "text/d_typeclash.prom",
            "# TYPE good counter\ngood_total 2\nalso_here 1\n",
        );
        fx.write("text/e_builtin.prom", "node_textfile_scrape_error 0\n");
        fx.write(
            "text/f_status.prom",
            "node_scrape_collector_success{collector=\"fake\"} 1\n",
        );
        let fams = run(&collector(&fx, Some("text")), collect);
        assert_eq!(value(&fams, "node_textfile_scrape_error", &[]), 1.0);
        assert_eq!(value(&fams, "good", &[]), 1.0);
        for skipped in [
            "broken",
            "stamped",
            "also_here",
            "node_scrape_collector_success",
        ] {
            assert!(fams.iter().all(|f| f.name != skipped), "{skipped}");
        }
        assert_eq!(find(&fams, "node_textfile_mtime_seconds").samples.len(), 1);
    }

    #[test]
    fn a_missing_directory_is_flagged_not_fatal() {
        let fx = Fixture::new();
        let fams = run(&collector(&fx, Some("nope")), collect);
        assert_eq!(value(&fams, "node_textfile_scrape_error", &[]), 1.0);
    }
}

#[cfg(test)]
mod collision_tests {
    use super::super::NodeCollector;
    use super::super::test_util::*;

    #[test]
    fn a_file_that_redefines_a_built_in_family_is_refused() {
        let fx = Fixture::new();
        fx.write("proc/loadavg", "0.50 0.25 0.10 1/100 42\n");
        fx.write("text/load.prom", "node_load1 99\n");
        let mut paths = fx.paths();
        paths.textfile = Some(fx.dir.path().join("text"));
        let fams = NodeCollector::new(paths).unwrap().collect();
        assert_eq!(value(&fams, "node_load1", &[]), 0.5);
        assert_eq!(find(&fams, "node_load1").samples.len(), 1);
        assert_eq!(value(&fams, "node_textfile_scrape_error", &[]), 1.0);
    }
}

#[cfg(test)]
mod special_file_tests {
    use super::super::NodeCollector;
    use super::super::test_util::*;

    #[test]
    fn a_fifo_named_like_a_metrics_file_does_not_hang_the_scrape() {
        let fx = Fixture::new();
        fx.write("text/good.prom", "good 1\n");
        let fifo = fx.dir.path().join("text/pipe.prom");
        let path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let mut paths = fx.paths();
        paths.textfile = Some(fx.dir.path().join("text"));
        let fams = NodeCollector::new(paths).unwrap().collect();
        assert_eq!(value(&fams, "good", &[]), 1.0);
    }
}
