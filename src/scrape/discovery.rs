//! Target groups from `static_configs` and from file-based discovery (`file_sd_configs`).
//!
//! This module is pure: it expands the `files` patterns and turns file contents into
//! target groups. The loop that re-reads files on change or every `refresh_interval`
//! lives with the scrape manager.
//!
//! A file holds a list of groups, in JSON (`.json`) or YAML (`.yml`, `.yaml`):
//!
//! ```yaml
//! - targets: ['10.0.0.1:9100', '10.0.0.2:9100']
//!   labels:
//!     env: prod
//! ```
//!
//! Each group gets the label `__meta_filepath` (the file) and the source
//! `<file>:<index>`, as in Prometheus.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::model::{Labels, is_valid_label_name};
use crate::scrape::config::StaticConfig;

/// The label every file-discovered group carries: the path of its file.
pub const META_FILEPATH_LABEL: &str = "__meta_filepath";
/// The label holding a target's `host:port`.
pub const ADDRESS_LABEL: &str = "__address__";

/// Targets that share labels, as one discovery source reports them.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetGroup {
    /// Identifies the group within its discovery: `<file>:<index>` for files, the
    /// index in `static_configs` for static targets.
    pub source: String,
    /// One label set per target; each holds at least `__address__`.
    pub targets: Vec<Labels>,
    /// Labels for every target of the group; a target's own labels win.
    pub labels: Labels,
}

#[derive(Debug, thiserror::Error)]
pub enum DiscoveryError {
    #[error("read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("parse {path}: {message}")]
    Parse { path: String, message: String },
    #[error("expand {pattern}: {message}")]
    Pattern { pattern: String, message: String },
}

/// The target groups of `static_configs`, sources numbered from 0 as Prometheus does.
pub fn static_target_groups(configs: &[StaticConfig]) -> Vec<TargetGroup> {
    configs
        .iter()
        .enumerate()
        .map(|(i, sc)| TargetGroup {
            source: i.to_string(),
            targets: sc
                .targets
                .iter()
                .map(|t| Labels::from_pairs([(ADDRESS_LABEL, t.as_str())]))
                .collect(),
            labels: Labels::from_pairs(sc.labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        })
        .collect()
}

/// Whether `pattern` is allowed in `file_sd_configs.files`: Prometheus's
/// `^[^*]*(\*[^/]*)?\.(json|yml|yaml|JSON|YML|YAML)$` — `*` only in the last path
/// element, and a JSON or YAML extension.
pub fn is_valid_file_sd_pattern(pattern: &str) -> bool {
    let ext_ok = ["json", "yml", "yaml", "JSON", "YML", "YAML"]
        .iter()
        .any(|ext| {
            pattern
                .strip_suffix(ext)
                .is_some_and(|rest| rest.ends_with('.'))
        });
    let star_ok = match pattern.find('*') {
        Some(i) => !pattern[i..].contains('/'),
        None => true,
    };
    ext_ok && star_ok
}

/// Resolves a `files` pattern against the directory of the configuration file, as
/// Prometheus does for relative paths.
pub fn resolve_pattern(config_dir: &Path, pattern: &str) -> PathBuf {
    let p = Path::new(pattern);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        config_dir.join(p)
    }
}

/// The files matching `pattern`, sorted. Like Go's `filepath.Glob` restricted to the
/// last path element: `*`, `?`, `[…]` and `\` escapes there; the directory part is
/// taken literally. A missing directory matches nothing.
pub fn glob(pattern: &Path) -> Result<Vec<PathBuf>, DiscoveryError> {
    let bad = |message: &str| DiscoveryError::Pattern {
        pattern: pattern.display().to_string(),
        message: message.to_string(),
    };
    let Some(last) = pattern.file_name().and_then(|n| n.to_str()) else {
        return Err(bad("no file name"));
    };
    let last_chars: Vec<char> = last.chars().collect();
    // Check the pattern once so a malformed one is an error even in an empty dir.
    match_name(&last_chars, &[]).map_err(|()| bad("syntax error in pattern"))?;
    if !last.contains(['*', '?', '[', '\\']) {
        return Ok(if std::fs::symlink_metadata(pattern).is_ok() {
            vec![pattern.to_path_buf()]
        } else {
            Vec::new()
        });
    }
    let dir = pattern.parent().unwrap_or(Path::new(""));
    let read_from = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let entries = match std::fs::read_dir(read_from) {
        Ok(e) => e,
        Err(_) => return Ok(Vec::new()),
    };
    let mut out = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let name_chars: Vec<char> = name.chars().collect();
        if match_name(&last_chars, &name_chars) == Ok(true) {
            out.push(dir.join(name));
        }
    }
    out.sort();
    Ok(out)
}

/// Go's `filepath.Match` for one path element. `Err` for a malformed pattern.
fn match_name(pattern: &[char], name: &[char]) -> Result<bool, ()> {
    let Some((&p, rest)) = pattern.split_first() else {
        return Ok(name.is_empty());
    };
    match p {
        '*' => {
            // Validate the rest even when the name is exhausted.
            for skip in 0..=name.len() {
                if name[..skip].contains(&'/') {
                    break;
                }
                if match_name(rest, &name[skip..])? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        '?' => match name.split_first() {
            Some((&c, tail)) if c != '/' => match_name(rest, tail),
            _ => {
                match_name(rest, &[])?;
                Ok(false)
            }
        },
        '[' => {
            let (matched, after) = match_class(rest, name.first().copied())?;
            if matched {
                match_name(after, &name[1..])
            } else {
                match_name(after, &[])?;
                Ok(false)
            }
        }
        '\\' => {
            let Some((&lit, tail)) = rest.split_first() else {
                return Err(());
            };
            match name.split_first() {
                Some((&c, ntail)) if c == lit => match_name(tail, ntail),
                _ => {
                    match_name(tail, &[])?;
                    Ok(false)
                }
            }
        }
        lit => match name.split_first() {
            Some((&c, tail)) if c == lit => match_name(rest, tail),
            _ => {
                match_name(rest, &[])?;
                Ok(false)
            }
        },
    }
}

/// Parses a `[...]` class (after the `[`) and tests `c`; returns whether it matched and
/// the pattern after the `]`.
fn match_class(pattern: &[char], c: Option<char>) -> Result<(bool, &[char]), ()> {
    let mut i = 0;
    let negated = pattern.first() == Some(&'^');
    if negated {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    loop {
        let Some(&ch) = pattern.get(i) else {
            return Err(());
        };
        if ch == ']' && !first {
            i += 1;
            break;
        }
        first = false;
        let lo = class_char(pattern, &mut i)?;
        let mut hi = lo;
        if pattern.get(i) == Some(&'-') {
            i += 1;
            hi = class_char(pattern, &mut i)?;
        }
        if let Some(c) = c
            && lo <= c
            && c <= hi
        {
            matched = true;
        }
    }
    let ok = c.is_some_and(|c| c != '/') && matched != negated;
    Ok((ok, &pattern[i..]))
}

fn class_char(pattern: &[char], i: &mut usize) -> Result<char, ()> {
    let mut ch = *pattern.get(*i).ok_or(())?;
    if ch == '-' || ch == ']' {
        return Err(());
    }
    if ch == '\\' {
        *i += 1;
        ch = *pattern.get(*i).ok_or(())?;
    }
    *i += 1;
    Ok(ch)
}

/// Targets and labels of a group as read, before checks.
type RawGroup = (Vec<String>, BTreeMap<String, String>);

/// A group as written in a JSON file; unknown keys are ignored, as Go's JSON does.
#[derive(Deserialize)]
struct JsonGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// A group as written in a YAML file; unknown keys are errors, as Prometheus reads
/// YAML strictly.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct YamlGroup {
    #[serde(default)]
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// Turns the contents of a file-discovery file into target groups. The format follows
/// the extension of `path`, which is also used for `__meta_filepath`, the sources and
/// messages.
pub fn parse_file_sd(path: &str, contents: &str) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let parse_err = |message: String| DiscoveryError::Parse {
        path: path.to_string(),
        message,
    };
    let ext = Path::new(path)
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let raw: Vec<Option<RawGroup>> = match ext.as_deref() {
        Some("json") => serde_json::from_str::<Vec<Option<JsonGroup>>>(contents)
            .map_err(|e| parse_err(e.to_string()))?
            .into_iter()
            .map(|g| g.map(|g| (g.targets, g.labels)))
            .collect(),
        Some("yml" | "yaml") => {
            if contents.trim().is_empty() {
                Vec::new()
            } else {
                serde_saphyr::from_str::<Vec<Option<YamlGroup>>>(contents)
                    .map_err(|e| parse_err(e.to_string()))?
                    .into_iter()
                    .map(|g| g.map(|g| (g.targets, g.labels)))
                    .collect()
            }
        }
        _ => {
            return Err(parse_err(
                "unsupported file extension: want .json, .yml or .yaml".into(),
            ));
        }
    };
    let mut groups = Vec::with_capacity(raw.len());
    for (i, g) in raw.into_iter().enumerate() {
        let Some((targets, labels)) = g else {
            return Err(parse_err(format!(
                "nil target group item found (index {i})"
            )));
        };
        for name in labels.keys() {
            if !is_valid_label_name(name) {
                return Err(parse_err(format!(
                    "group {i}: {name:?} is not a valid label name"
                )));
            }
        }
        let mut label_builder =
            Labels::from_pairs(labels.iter().map(|(k, v)| (k.as_str(), v.as_str()))).to_builder();
        label_builder.set(META_FILEPATH_LABEL, path);
        groups.push(TargetGroup {
            source: format!("{path}:{i}"),
            targets: targets
                .iter()
                .map(|t| Labels::from_pairs([(ADDRESS_LABEL, t.as_str())]))
                .collect(),
            labels: label_builder.build(),
        });
    }
    Ok(groups)
}

/// Reads and parses one file-discovery file.
pub fn read_file_sd(path: &Path) -> Result<Vec<TargetGroup>, DiscoveryError> {
    let shown = path.display().to_string();
    let contents = std::fs::read_to_string(path).map_err(|source| DiscoveryError::Read {
        path: shown.clone(),
        source,
    })?;
    parse_file_sd(&shown, &contents)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_groups_with_filepath_label_and_sources() {
        let json = r#"[
            {"targets": ["10.0.0.1:9100", "10.0.0.2:9100"], "labels": {"env": "prod"}},
            {"targets": ["db:9187"], "extra": 1}
        ]"#;
        let groups = parse_file_sd("/etc/sd/nodes.json", json).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].source, "/etc/sd/nodes.json:0");
        assert_eq!(groups[1].source, "/etc/sd/nodes.json:1");
        assert_eq!(groups[0].targets.len(), 2);
        assert_eq!(
            groups[0].targets[1].get("__address__"),
            Some("10.0.0.2:9100")
        );
        assert_eq!(groups[0].labels.get("env"), Some("prod"));
        assert_eq!(
            groups[0].labels.get("__meta_filepath"),
            Some("/etc/sd/nodes.json")
        );
        assert_eq!(
            groups[1].labels.get("__meta_filepath"),
            Some("/etc/sd/nodes.json")
        );
    }

    #[test]
    fn parses_yaml_groups() {
        let yaml = "- targets:\n    - web01:9100\n    - web02:9100\n  labels:\n    role: web\n- targets: ['db01:9100']\n";
        let groups = parse_file_sd("targets/node.YML", yaml).unwrap();
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].labels.get("role"), Some("web"));
        assert_eq!(groups[1].targets[0].get("__address__"), Some("db01:9100"));
        assert!(parse_file_sd("x.yaml", "").unwrap().is_empty());
    }

    #[test]
    fn errors_name_the_file() {
        for (path, contents, want) in [
            ("a.json", "{not json", "parse a.json:"),
            ("b.yml", "- targets: [x]\n  lables: {a: b}\n", "lables"),
            (
                "c.json",
                r#"[{"targets": ["x"], "labels": {"a-b": "c"}}]"#,
                "\"a-b\" is not a valid label name",
            ),
            ("d.json", "[null]", "nil target group item found (index 0)"),
            ("e.txt", "[]", "unsupported file extension"),
            ("f.json", "", "parse f.json"),
        ] {
            let e = parse_file_sd(path, contents).unwrap_err().to_string();
            assert!(e.contains(path) && e.contains(want), "{e}");
        }
    }

    #[test]
    fn yaml_errors_carry_the_line() {
        let e = parse_file_sd("b.yml", "- targets: [x]\n  lables: {a: b}\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2"), "{e}");
    }

    #[test]
    fn file_sd_patterns_follow_prometheus() {
        for ok in [
            "a.json",
            "/x/y/*.yml",
            "dir/nodes-*.yaml",
            "*.JSON",
            "a*b*.yml",
        ] {
            assert!(is_valid_file_sd_pattern(ok), "{ok}");
        }
        for bad in [
            "a.txt",
            "a",
            "dir/*/x.yml",
            "*/x.json",
            "json",
            "a.json.bak",
        ] {
            assert!(!is_valid_file_sd_pattern(bad), "{bad}");
        }
    }

    #[test]
    fn glob_matches_only_the_last_element() {
        let dir = tempfile::tempdir().unwrap();
        for f in ["a.yml", "b.yml", "c.json", "ab.yml"] {
            std::fs::write(dir.path().join(f), "[]").unwrap();
        }
        let names = |pattern: &str| -> Vec<String> {
            glob(&dir.path().join(pattern))
                .unwrap()
                .iter()
                .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(names("*.yml"), ["a.yml", "ab.yml", "b.yml"]);
        assert_eq!(names("?.yml"), ["a.yml", "b.yml"]);
        assert_eq!(names("[ab].yml"), ["a.yml", "b.yml"]);
        assert_eq!(names("[^a].yml"), ["b.yml"]);
        assert_eq!(names("c.json"), ["c.json"]);
        assert!(names("missing.json").is_empty());
        assert!(glob(&dir.path().join("nodir/*.yml")).unwrap().is_empty());
        assert!(glob(&dir.path().join("[.yml")).is_err());
    }

    #[test]
    fn reads_files_and_static_groups() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.json");
        std::fs::write(&p, r#"[{"targets": ["h:1"]}]"#).unwrap();
        let groups = read_file_sd(&p).unwrap();
        assert_eq!(
            groups[0].labels.get("__meta_filepath"),
            Some(&*p.display().to_string())
        );
        let e = read_file_sd(&dir.path().join("none.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("none.json"), "{e}");

        let st = static_target_groups(&[StaticConfig {
            targets: vec!["a:1".into(), "b:2".into()],
            labels: [("env".to_string(), "x".to_string())].into(),
        }]);
        assert_eq!(st[0].source, "0");
        assert_eq!(st[0].targets.len(), 2);
        assert_eq!(st[0].labels.get("env"), Some("x"));
    }

    #[test]
    fn relative_patterns_resolve_against_the_config_dir() {
        assert_eq!(
            resolve_pattern(Path::new("/etc/prometheus"), "sd/*.yml"),
            PathBuf::from("/etc/prometheus/sd/*.yml")
        );
        assert_eq!(
            resolve_pattern(Path::new("/etc/prometheus"), "/abs/x.json"),
            PathBuf::from("/abs/x.json")
        );
    }
}
