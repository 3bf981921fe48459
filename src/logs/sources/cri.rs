//! Kubernetes container logs as the kubelet writes them under `/var/log/pods`:
//! `<namespace>_<pod>_<uid>/<container>/<restart>.log`, each line in the CRI format
//! `<RFC 3339 time> <stdout|stderr> <P|F> <text>`, where `P` marks a part of a line
//! the runtime split and `F` its end.

use std::collections::BTreeMap;
use std::path::Path;

/// `namespace`, `pod` and `container` from a pod log file's path; `None` for a
/// path that is not one.
pub fn labels_of_path(path: &Path) -> Option<BTreeMap<String, String>> {
    let container = path.parent()?;
    let pod_dir = container.parent()?;
    let container = container.file_name()?.to_str()?;
    let pod_dir = pod_dir.file_name()?.to_str()?;
    let mut parts = pod_dir.splitn(3, '_');
    let (namespace, pod, _uid) = (parts.next()?, parts.next()?, parts.next()?);
    if namespace.is_empty() || pod.is_empty() || container.is_empty() {
        return None;
    }
    Some(BTreeMap::from([
        ("namespace".to_string(), namespace.to_string()),
        ("pod".to_string(), pod.to_string()),
        ("container".to_string(), container.to_string()),
    ]))
}

/// One file's lines split by the runtime, joined back per stream.
#[derive(Default)]
pub struct Partials {
    /// stream → (time of the first part, the parts so far).
    open: BTreeMap<String, (i64, String)>,
}

/// The most a split line may grow to before it is handed out as it is.
const MAX_JOINED: usize = 256 * 1024;

impl Partials {
    /// Takes one CRI line; a complete entry comes back as (time, `stream\ttext`).
    /// A line that is not CRI comes back as it is, at the current time.
    pub fn push(&mut self, line: &str) -> Option<(i64, String)> {
        let Some((ts, stream, full, text)) = parse(line) else {
            let now = crate::model::now_ms().saturating_mul(1_000_000);
            return Some((now, format!("\t{line}")));
        };
        let joined = match self.open.remove(stream) {
            Some((first, mut so_far)) => {
                so_far.push_str(text);
                (first, so_far)
            }
            None => (ts, text.to_string()),
        };
        if full || joined.1.len() >= MAX_JOINED {
            return Some((joined.0, format!("{stream}\t{}", joined.1)));
        }
        self.open.insert(stream.to_string(), joined);
        None
    }
}

/// (time, stream, whether it ends a line, text) of a CRI line.
fn parse(line: &str) -> Option<(i64, &str, bool, &str)> {
    let mut it = line.splitn(4, ' ');
    let ts = it.next()?;
    let stream = it.next()?;
    let tag = it.next()?;
    let text = it.next().unwrap_or("");
    let ts = chrono::DateTime::parse_from_rfc3339(ts)
        .ok()?
        .timestamp_nanos_opt()?;
    if stream != "stdout" && stream != "stderr" {
        return None;
    }
    // The tag may carry more flags after the first (`F:x`); the first says.
    let full = match tag.split(':').next()? {
        "F" => true,
        "P" => false,
        _ => return None,
    };
    Some((ts, stream, full, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_name_namespace_pod_and_container() {
        let l = labels_of_path(Path::new(
            "/var/log/pods/kube-system_coredns-5d78c9869d-x2x_8f1e/coredns/0.log",
        ))
        .unwrap();
        assert_eq!(l["namespace"], "kube-system");
        assert_eq!(l["pod"], "coredns-5d78c9869d-x2x");
        assert_eq!(l["container"], "coredns");
        assert!(labels_of_path(Path::new("/var/log/pods/nounderscore/c/0.log")).is_none());
    }

    #[test]
    fn split_lines_are_joined_per_stream() {
        let mut p = Partials::default();
        assert_eq!(
            p.push("2024-01-02T03:04:05.000000006Z stdout F hello"),
            Some((1_704_164_645_000_000_006, "stdout\thello".to_string()))
        );
        assert_eq!(p.push("2024-01-02T03:04:06Z stdout P part one, "), None);
        assert_eq!(
            p.push("2024-01-02T03:04:06Z stderr F an error"),
            Some((1_704_164_646_000_000_000, "stderr\tan error".to_string()))
        );
        assert_eq!(
            p.push("2024-01-02T03:04:07Z stdout F part two"),
            Some((
                1_704_164_646_000_000_000,
                "stdout\tpart one, part two".to_string()
            ))
        );
        // Not CRI: kept as it came.
        let (_, text) = p.push("plain text").unwrap();
        assert_eq!(text, "\tplain text");
    }
}
