//! `os`: `node_os_info` and `node_os_version` from `etc/os-release` (or
//! `usr/lib/os-release`) under the root path.

use super::{NodeCollector, Result, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

/// os-release keys → `node_os_info` labels, in node_exporter's (sorted) order.
const INFO_KEYS: [(&str, &str); 12] = [
    ("build_id", "BUILD_ID"),
    ("id", "ID"),
    ("id_like", "ID_LIKE"),
    ("image_id", "IMAGE_ID"),
    ("image_version", "IMAGE_VERSION"),
    ("name", "NAME"),
    ("pretty_name", "PRETTY_NAME"),
    ("variant", "VARIANT"),
    ("variant_id", "VARIANT_ID"),
    ("version", "VERSION"),
    ("version_codename", "VERSION_CODENAME"),
    ("version_id", "VERSION_ID"),
];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let text = match read_file(&c.root_path("etc/os-release")) {
        Ok(t) => t,
        Err(_) => read_file(&c.root_path("usr/lib/os-release"))?,
    };
    let vars = parse_os_release(&text);
    let get = |key: &str| {
        vars.iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    };
    let mut info = MetricFamily::new(
        "node_os_info",
        MetricType::Gauge,
        "A metric with a constant '1' value labeled by build_id, id, id_like, image_id, image_version, name, pretty_name, variant, variant_id, version, version_codename, version_id.",
    );
    info.push(
        INFO_KEYS
            .iter()
            .map(|(label, key)| ((*label).to_string(), get(key).to_string()))
            .collect(),
        1.0,
    );
    out.push(info);
    let mut version = MetricFamily::new(
        "node_os_version",
        MetricType::Gauge,
        "Metric containing the major.minor part of the OS version.",
    );
    version.push(
        vec![
            ("id".to_string(), get("ID").to_string()),
            ("id_like".to_string(), get("ID_LIKE").to_string()),
            ("name".to_string(), get("NAME").to_string()),
        ],
        major_minor(get("VERSION_ID")),
    );
    out.push(version);
    Ok(())
}

/// `^[0-9]+\.?[0-9]*` of VERSION_ID as a number, 0 when there is none ("rolling").
fn major_minor(version_id: &str) -> f64 {
    let int_end = version_id
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(version_id.len());
    if int_end == 0 {
        return 0.0;
    }
    let mut end = int_end;
    if version_id[end..].starts_with('.') {
        end += 1;
        end += version_id[end..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(version_id.len() - end);
    }
    version_id[..end]
        .trim_end_matches('.')
        .parse()
        .unwrap_or(0.0)
}

/// `KEY=value` lines with shell-style quoting as os-release(5) describes it.
fn parse_os_release(text: &str) -> Vec<(String, String)> {
    let mut vars = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        vars.push((key.trim().to_string(), unquote(raw.trim())));
    }
    vars
}

fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    let mut quote: Option<char> = None;
    while let Some(ch) = chars.next() {
        match (quote, ch) {
            (None, '"' | '\'') => quote = Some(ch),
            (Some(q), c) if c == q => quote = None,
            (Some('\''), c) => out.push(c),
            (_, '\\') => {
                if let Some(next) = chars.next() {
                    out.push(next);
                }
            }
            (_, c) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn os_release_info_and_version() {
        let fx = Fixture::new();
        fx.write(
            "root/usr/lib/os-release",
            "NAME=\"Ubuntu\"\nVERSION=\"20.04.2 LTS (Focal Fossa)\"\nID=ubuntu\nID_LIKE=debian\n\
PRETTY_NAME='Ubuntu 20.04.2 LTS'\nVERSION_ID=\"20.04\"\nVERSION_CODENAME=focal\n# comment\n",
        );
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(
                &fams,
                "node_os_version",
                &[("id", "ubuntu"), ("id_like", "debian"), ("name", "Ubuntu")]
            ),
            20.04
        );
        assert_eq!(
            value(
                &fams,
                "node_os_info",
                &[
                    ("pretty_name", "Ubuntu 20.04.2 LTS"),
                    ("version_codename", "focal"),
                    ("variant", "")
                ]
            ),
            1.0
        );
        assert_eq!(find(&fams, "node_os_info").samples[0].labels.len(), 12);
    }

    #[test]
    fn major_minor_parsing() {
        assert_eq!(major_minor("12"), 12.0);
        assert_eq!(major_minor("7.9.2009"), 7.9);
        assert_eq!(major_minor("22.04"), 22.04);
        assert_eq!(major_minor("rolling"), 0.0);
        assert_eq!(major_minor(""), 0.0);
        assert_eq!(major_minor("3."), 3.0);
    }

    #[test]
    fn unquote_handles_both_quotes_and_escapes() {
        assert_eq!(unquote("\"a \\\"b\\\" c\""), "a \"b\" c");
        assert_eq!(unquote("'x y'"), "x y");
        assert_eq!(unquote("plain"), "plain");
    }
}
