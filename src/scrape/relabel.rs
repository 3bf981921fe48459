//! Relabeling with Prometheus's semantics (`relabel_configs`, `metric_relabel_configs`).
//!
//! Every action of Prometheus 2.42+ is here: `replace`, `keep`, `drop`, `keepequal`,
//! `dropequal`, `hashmod`, `labelmap`, `labeldrop`, `labelkeep`, `lowercase`,
//! `uppercase`. A rule is validated when it is read, with Prometheus's messages, so a
//! bad rule is reported with its line by the YAML parser.
//!
//! Differences from Go that a user could notice: Rust's `regex` crate treats `\w`, `\d`,
//! `\s` and `\b` as Unicode classes where Go's RE2 is ASCII-only, and `$name` in a
//! replacement accepts what Rust calls alphabetic and numeric where Go uses Unicode's
//! letter and decimal-digit categories. Both only matter for non-ASCII input.

use std::fmt;

use arcstr::ArcStr;
use md5::{Digest, Md5};
use regex::{Captures, Regex};
use serde::{Deserialize, Deserializer};

use crate::model::{Label, Labels, LabelsBuilder, is_valid_label_name};

/// The default `regex` of a rule.
pub const DEFAULT_REGEX: &str = "(.*)";
/// The default `separator` of a rule.
pub const DEFAULT_SEPARATOR: &str = ";";
/// The default `replacement` of a rule.
pub const DEFAULT_REPLACEMENT: &str = "$1";

/// What a rule does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Action {
    /// Match `regex` against the joined source values; on a match set `target_label`
    /// (which may hold `$` references) to the expanded `replacement`.
    #[default]
    Replace,
    /// Drop the series or target unless `regex` matches the joined source values.
    Keep,
    /// Drop the series or target when `regex` matches the joined source values.
    Drop,
    /// Drop unless the joined source values equal the value of `target_label`.
    KeepEqual,
    /// Drop when the joined source values equal the value of `target_label`.
    DropEqual,
    /// Set `target_label` to the md5 of the joined source values modulo `modulus`.
    HashMod,
    /// Copy every label whose name matches `regex` to the name given by `replacement`.
    LabelMap,
    /// Remove every label whose name matches `regex`.
    LabelDrop,
    /// Remove every label whose name does not match `regex`.
    LabelKeep,
    /// Set `target_label` to the joined source values in lower case.
    Lowercase,
    /// Set `target_label` to the joined source values in upper case.
    Uppercase,
}

impl Action {
    /// The name as written in the configuration.
    pub fn as_str(&self) -> &'static str {
        match self {
            Action::Replace => "replace",
            Action::Keep => "keep",
            Action::Drop => "drop",
            Action::KeepEqual => "keepequal",
            Action::DropEqual => "dropequal",
            Action::HashMod => "hashmod",
            Action::LabelMap => "labelmap",
            Action::LabelDrop => "labeldrop",
            Action::LabelKeep => "labelkeep",
            Action::Lowercase => "lowercase",
            Action::Uppercase => "uppercase",
        }
    }

    /// Parses an action name; like Prometheus, case does not matter.
    pub fn parse(s: &str) -> Result<Action, String> {
        let all = [
            Action::Replace,
            Action::Keep,
            Action::Drop,
            Action::KeepEqual,
            Action::DropEqual,
            Action::HashMod,
            Action::LabelMap,
            Action::LabelDrop,
            Action::LabelKeep,
            Action::Lowercase,
            Action::Uppercase,
        ];
        let lower = s.to_lowercase();
        all.into_iter()
            .find(|a| a.as_str() == lower)
            .ok_or_else(|| format!("unknown relabel action {s:?}"))
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Action {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Action::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A rule's regex: compiled fully anchored (`^(?:…)$`) as Prometheus does, and
/// remembering the text the user wrote.
#[derive(Clone)]
pub struct RelabelRegex {
    source: String,
    regex: Regex,
}

impl RelabelRegex {
    pub fn new(source: &str) -> Result<Self, regex::Error> {
        Ok(Self {
            source: source.to_string(),
            regex: Regex::new(&format!("^(?:{source})$"))?,
        })
    }

    /// The regex as written, without the anchors.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    pub fn is_match(&self, s: &str) -> bool {
        self.regex.is_match(s)
    }

    /// The anchored, compiled regex.
    pub fn regex(&self) -> &Regex {
        &self.regex
    }
}

impl fmt::Debug for RelabelRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.source)
    }
}

impl PartialEq for RelabelRegex {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source
    }
}

/// One rule as written in YAML, every key optional. [`RelabelConfig`] is built from it
/// with Prometheus's defaults and validation; build one by hand with `..Default::default()`
/// and `RelabelConfig::try_from`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRelabelConfig {
    pub source_labels: Option<Vec<String>>,
    pub separator: Option<String>,
    pub regex: Option<String>,
    pub modulus: Option<u64>,
    pub target_label: Option<String>,
    pub replacement: Option<String>,
    pub action: Option<Action>,
}

/// One relabeling rule, validated. Keys and defaults are Prometheus's.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RawRelabelConfig")]
pub struct RelabelConfig {
    /// Labels whose values are joined with `separator`, in order; a missing label
    /// contributes the empty string.
    pub source_labels: Vec<String>,
    /// Placed between joined source values (default `;`).
    pub separator: String,
    /// Matched against the joined values, or against label names for `labelmap`,
    /// `labeldrop` and `labelkeep` (default `(.*)`), always fully anchored.
    pub regex: RelabelRegex,
    /// For `hashmod`.
    pub modulus: u64,
    /// The label written by `replace`, `hashmod`, `lowercase`, `uppercase`, and
    /// compared by `keepequal`/`dropequal`.
    pub target_label: String,
    /// Expanded with Go's `Regexp.Expand` rules (default `$1`).
    pub replacement: String,
    /// Default `replace`.
    pub action: Action,
}

impl TryFrom<RawRelabelConfig> for RelabelConfig {
    type Error = String;

    fn try_from(raw: RawRelabelConfig) -> Result<Self, String> {
        let source_labels_given = raw.source_labels.is_some();
        let source_labels = raw.source_labels.unwrap_or_default();
        for name in &source_labels {
            if !is_valid_label_name(name) {
                return Err(format!("{name:?} is not a valid label name"));
            }
        }
        let regex_text = raw.regex.unwrap_or_else(|| DEFAULT_REGEX.to_string());
        let regex = RelabelRegex::new(&regex_text)
            .map_err(|e| format!("invalid regex {regex_text:?}: {e}"))?;
        let cfg = RelabelConfig {
            source_labels,
            separator: raw
                .separator
                .unwrap_or_else(|| DEFAULT_SEPARATOR.to_string()),
            regex,
            modulus: raw.modulus.unwrap_or(0),
            target_label: raw.target_label.unwrap_or_default(),
            replacement: raw
                .replacement
                .unwrap_or_else(|| DEFAULT_REPLACEMENT.to_string()),
            action: raw.action.unwrap_or_default(),
        };
        cfg.validate(source_labels_given)?;
        Ok(cfg)
    }
}

impl RelabelConfig {
    /// Prometheus's `relabel.Config.Validate`, with its messages.
    fn validate(&self, source_labels_given: bool) -> Result<(), String> {
        use Action::*;
        let action = self.action;
        let target = self.target_label.as_str();
        let replacement_is_default = self.replacement == DEFAULT_REPLACEMENT;
        if action == HashMod && self.modulus == 0 {
            return Err("relabel configuration for hashmod requires non-zero modulus".into());
        }
        let needs_target = matches!(
            action,
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual
        );
        if needs_target && target.is_empty() {
            return Err(format!(
                "relabel configuration for {action} action requires 'target_label' value"
            ));
        }
        let target_ok = match action {
            Replace if target.contains('$') => is_valid_relabel_template(target),
            Replace | HashMod | Lowercase | Uppercase | KeepEqual | DropEqual => {
                is_valid_label_name(target)
            }
            _ => true,
        };
        if !target_ok {
            return Err(format!(
                "{target:?} is invalid 'target_label' for {action} action"
            ));
        }
        if matches!(action, Lowercase | Uppercase | KeepEqual | DropEqual)
            && !replacement_is_default
        {
            return Err(format!("'replacement' can not be set for {action} action"));
        }
        if action == LabelMap && !is_valid_relabel_template(&self.replacement) {
            return Err(format!(
                "{:?} is invalid 'replacement' for {action} action",
                self.replacement
            ));
        }
        if matches!(action, KeepEqual | DropEqual)
            && (self.regex.as_str() != DEFAULT_REGEX
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || !replacement_is_default)
        {
            return Err(format!(
                "{action} action requires only 'source_labels' and `target_label`, and no other fields"
            ));
        }
        if matches!(action, LabelDrop | LabelKeep)
            && (source_labels_given
                || !target.is_empty()
                || self.modulus != 0
                || self.separator != DEFAULT_SEPARATOR
                || !replacement_is_default)
        {
            return Err(format!(
                "{action} action requires only 'regex', and no other fields"
            ));
        }
        Ok(())
    }
}

/// Prometheus's `relabelTarget` pattern, `^(?:(?:[a-zA-Z_]|\$(?:\{\w+\}|\w+))+\w*)+$`,
/// checked by hand: a name that may contain `$ref` and `${ref}`, not starting with a
/// digit.
fn is_valid_relabel_template(s: &str) -> bool {
    let b = s.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    match b.first() {
        None => return false,
        Some(c) if c.is_ascii_digit() => return false,
        _ => {}
    }
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'$' {
            let braced = b.get(i + 1) == Some(&b'{');
            let start = if braced { i + 2 } else { i + 1 };
            let mut j = start;
            while j < b.len() && word(b[j]) {
                j += 1;
            }
            if j == start {
                return false;
            }
            if braced {
                if b.get(j) != Some(&b'}') {
                    return false;
                }
                j += 1;
            }
            i = j;
        } else if word(b[i]) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// Appends `template` to `out` with `$` references replaced from `caps`, following Go's
/// `Regexp.Expand`: `$name` takes the longest run of letters, digits and `_` (so `$1x`
/// means the group named `1x`, which is usually absent and expands to nothing),
/// `${name}` delimits it, a name of digits without a leading zero is a group index,
/// `$$` is a literal `$`, and a `$` not followed by a valid reference stays as is.
pub fn expand_template(out: &mut String, template: &str, regex: &Regex, caps: &Captures<'_>) {
    let mut rest = template;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        rest = &rest[pos + 1..];
        if let Some(after) = rest.strip_prefix('$') {
            out.push('$');
            rest = after;
            continue;
        }
        let Some((name, after)) = extract_reference(rest) else {
            out.push('$');
            continue;
        };
        rest = after;
        let group = match group_index(name) {
            Some(i) => caps.get(i),
            None => regex
                .capture_names()
                .position(|n| n == Some(name))
                .and_then(|i| caps.get(i)),
        };
        if let Some(m) = group {
            out.push_str(m.as_str());
        }
    }
    out.push_str(rest);
}

/// Splits a reference (`name` or `{name}`) off the text after a `$`.
fn extract_reference(s: &str) -> Option<(&str, &str)> {
    let (body, braced) = match s.strip_prefix('{') {
        Some(b) => (b, true),
        None => (s, false),
    };
    let end = body
        .char_indices()
        .find(|&(_, c)| !(c.is_alphabetic() || c.is_numeric() || c == '_'))
        .map_or(body.len(), |(i, _)| i);
    if end == 0 {
        return None;
    }
    let name = &body[..end];
    let rest = &body[end..];
    if braced {
        let rest = rest.strip_prefix('}')?;
        return Some((name, rest));
    }
    Some((name, rest))
}

/// A group index as Go reads one: ASCII digits, no leading zero, below 10^8.
fn group_index(name: &str) -> Option<usize> {
    if !name.bytes().all(|b| b.is_ascii_digit()) || (name.len() > 1 && name.starts_with('0')) {
        return None;
    }
    name.parse::<usize>().ok().filter(|&n| n < 100_000_000)
}

/// Expands `template` against a match of `regex` on `haystack`, or `None` when the
/// regex does not match.
fn expand_match(regex: &Regex, haystack: &str, template: &str) -> Option<String> {
    let caps = regex.captures(haystack)?;
    let mut out = String::new();
    expand_template(&mut out, template, regex, &caps);
    Some(out)
}

/// Prometheus's `hashmod`: md5 of `value`, the last 8 bytes of the digest read as a
/// big-endian integer, modulo `modulus`. (The last half, to give the same result as
/// Prometheus's older `sum64`, whose shifts past 64 bits dropped the first half.)
pub fn hashmod(value: &str, modulus: u64) -> u64 {
    let digest = Md5::digest(value.as_bytes());
    let mut tail = [0u8; 8];
    tail.copy_from_slice(&digest[8..16]);
    u64::from_be_bytes(tail).checked_rem(modulus).unwrap_or(0)
}

/// The label set being relabeled, sorted by name, with `get`/`set`/`delete`.
struct Work(Vec<Label>);

impl Work {
    fn find(&self, name: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|l| (*l.name).cmp(name))
    }

    fn get(&self, name: &str) -> &str {
        self.find(name).map_or("", |i| &self.0[i].value)
    }

    /// Sets `name`; an empty value removes it.
    fn set(&mut self, name: &str, value: &str) {
        match (self.find(name), value.is_empty()) {
            (Ok(i), true) => {
                self.0.remove(i);
            }
            (Ok(i), false) => self.0[i].value = ArcStr::from(value),
            (Err(_), true) => {}
            (Err(i), false) => self.0.insert(i, Label::new(name, value)),
        }
    }
}

/// Applies `configs` in order to `labels`. Returns false when a rule drops the series
/// or target (the builder's contents are then unspecified). A label whose value becomes
/// empty is removed.
pub fn process(labels: &mut LabelsBuilder, configs: &[RelabelConfig]) -> bool {
    if configs.is_empty() {
        return true;
    }
    // `LabelsBuilder` offers no lookup, so the rules run on a sorted copy that is
    // written back at the end.
    let before = labels.build();
    let Some(after) = process_labels(&before, configs) else {
        return false;
    };
    for l in before.iter() {
        if after.get(&l.name).is_none() {
            labels.delete(&l.name);
        }
    }
    for l in after.iter() {
        if before.get(&l.name) != Some(&*l.value) {
            labels.set(l.name.clone(), l.value.clone());
        }
    }
    true
}

/// Applies `configs` in order to `labels`; `None` when a rule drops them.
pub fn process_labels(labels: &Labels, configs: &[RelabelConfig]) -> Option<Labels> {
    let mut work = Work(labels.as_slice().to_vec());
    for cfg in configs {
        if !relabel(cfg, &mut work) {
            return None;
        }
    }
    Some(Labels::from_sorted(work.0))
}

/// One rule; false drops.
fn relabel(cfg: &RelabelConfig, work: &mut Work) -> bool {
    let mut value = String::new();
    for (i, name) in cfg.source_labels.iter().enumerate() {
        if i > 0 {
            value.push_str(&cfg.separator);
        }
        value.push_str(work.get(name));
    }
    let regex = &cfg.regex;
    match cfg.action {
        Action::Drop => return !regex.is_match(&value),
        Action::Keep => return regex.is_match(&value),
        Action::DropEqual => return work.get(&cfg.target_label) != value,
        Action::KeepEqual => return work.get(&cfg.target_label) == value,
        Action::Replace => {
            let Some(caps) = regex.regex().captures(&value) else {
                return true;
            };
            let mut target = String::new();
            expand_template(&mut target, &cfg.target_label, regex.regex(), &caps);
            if !is_valid_label_name(&target) {
                return true;
            }
            let mut replaced = String::new();
            expand_template(&mut replaced, &cfg.replacement, regex.regex(), &caps);
            work.set(&target, &replaced);
        }
        Action::Lowercase => work.set(&cfg.target_label, &value.to_lowercase()),
        Action::Uppercase => work.set(&cfg.target_label, &value.to_uppercase()),
        Action::HashMod => {
            let m = hashmod(&value, cfg.modulus);
            work.set(&cfg.target_label, &m.to_string());
        }
        Action::LabelMap => {
            // Every rule sees the labels as they were before it started.
            let snapshot = work.0.clone();
            for l in &snapshot {
                let Some(name) = expand_match(regex.regex(), &l.name, &cfg.replacement) else {
                    continue;
                };
                // Prometheus would set even an invalid name here; ODIN never creates
                // a label it could not store.
                if is_valid_label_name(&name) {
                    work.set(&name, &l.value);
                }
            }
        }
        Action::LabelDrop => work.0.retain(|l| !regex.is_match(&l.name)),
        Action::LabelKeep => work.0.retain(|l| regex.is_match(&l.name)),
    }
    true
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn rules(yaml: &str) -> Vec<RelabelConfig> {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn rule_err(yaml: &str) -> String {
        serde_saphyr::from_str::<Vec<RelabelConfig>>(yaml)
            .unwrap_err()
            .to_string()
    }

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        Labels::from_pairs(pairs.iter().copied())
    }

    fn run(input: &[(&str, &str)], yaml: &str) -> Option<Labels> {
        process_labels(&labels(input), &rules(yaml))
    }

    fn expand(pattern: &str, haystack: &str, template: &str) -> String {
        let re = RelabelRegex::new(pattern).unwrap();
        expand_match(re.regex(), haystack, template).unwrap()
    }

    #[test]
    fn defaults_are_prometheus_defaults() {
        let r = &rules("- target_label: x\n")[0];
        assert_eq!(r.action, Action::Replace);
        assert_eq!(r.separator, ";");
        assert_eq!(r.regex.as_str(), "(.*)");
        assert_eq!(r.replacement, "$1");
        assert_eq!(r.modulus, 0);
    }

    #[test]
    fn action_names_are_case_insensitive() {
        assert_eq!(
            rules("- action: LabelDrop\n  regex: x\n")[0].action,
            Action::LabelDrop
        );
        assert!(rule_err("- action: frobnicate\n").contains("unknown relabel action"));
    }

    #[test]
    fn replace_joins_sources_and_expands() {
        let out = run(
            &[("a", "foo"), ("b", "bar")],
            "- source_labels: [a, b]\n  regex: (f.*);(.*)\n  target_label: c\n  replacement: ${1}-${2}\n",
        )
        .unwrap();
        assert_eq!(out.get("c"), Some("foo-bar"));
    }

    #[test]
    fn replace_without_match_changes_nothing() {
        let input = [("a", "foo")];
        let out = run(
            &input,
            "- source_labels: [a]\n  regex: bar\n  target_label: a\n  replacement: baz\n",
        )
        .unwrap();
        assert_eq!(out, labels(&input));
    }

    #[test]
    fn regex_is_fully_anchored() {
        let out = run(
            &[("a", "foobar")],
            "- source_labels: [a]\n  regex: foo\n  target_label: b\n  replacement: hit\n",
        )
        .unwrap();
        assert_eq!(out.get("b"), None);
        let out = run(
            &[("a", "foo")],
            "- source_labels: [a]\n  regex: foo|bar\n  target_label: b\n  replacement: hit\n",
        )
        .unwrap();
        assert_eq!(out.get("b"), Some("hit"));
    }

    #[test]
    fn replace_to_empty_value_removes_the_label() {
        let out = run(
            &[("a", "foo"), ("b", "x")],
            "- source_labels: [c]\n  target_label: b\n",
        )
        .unwrap();
        assert_eq!(out.get("b"), None);
        assert_eq!(out.get("a"), Some("foo"));
    }

    #[test]
    fn replace_with_missing_source_sets_constant() {
        let out = run(
            &[("a", "foo")],
            "- target_label: env\n  replacement: prod\n",
        )
        .unwrap();
        assert_eq!(out.get("env"), Some("prod"));
    }

    #[test]
    fn replace_with_templated_target_label() {
        let out = run(
            &[("a", "some-name-value")],
            "- source_labels: [a]\n  regex: some-([^-]+)-([^,]+)\n  target_label: ${1}\n  replacement: ${2}\n",
        )
        .unwrap();
        assert_eq!(out.get("name"), Some("value"));
    }

    #[test]
    fn replace_skips_invalid_expanded_target() {
        let input = [("a", "1bad")];
        let out = run(
            &input,
            "- source_labels: [a]\n  regex: (.*)\n  target_label: $1\n  replacement: x\n",
        )
        .unwrap();
        assert_eq!(out, labels(&input));
    }

    #[test]
    fn keep_and_drop() {
        let keep = "- source_labels: [a]\n  regex: f.*\n  action: keep\n";
        assert!(run(&[("a", "foo")], keep).is_some());
        assert!(run(&[("a", "bar")], keep).is_none());
        assert!(run(&[("b", "foo")], keep).is_none());
        let drop = "- source_labels: [a]\n  regex: f.*\n  action: drop\n";
        assert!(run(&[("a", "foo")], drop).is_none());
        assert!(run(&[("a", "bar")], drop).is_some());
    }

    #[test]
    fn drop_on_missing_label_matches_empty_string() {
        let drop = "- source_labels: [missing]\n  regex: ''\n  action: drop\n";
        assert!(run(&[("a", "foo")], drop).is_none());
    }

    #[test]
    fn keepequal_and_dropequal() {
        let keepeq = "- source_labels: [a]\n  target_label: b\n  action: keepequal\n";
        assert!(run(&[("a", "x"), ("b", "x")], keepeq).is_some());
        assert!(run(&[("a", "x"), ("b", "y")], keepeq).is_none());
        let dropeq = "- source_labels: [a]\n  target_label: b\n  action: dropequal\n";
        assert!(run(&[("a", "x"), ("b", "x")], dropeq).is_none());
        assert!(run(&[("a", "x"), ("b", "y")], dropeq).is_some());
        // Both absent: "" == "".
        assert!(run(&[("c", "1")], keepeq).is_some());
    }

    #[test]
    fn hashmod_matches_prometheus() {
        // Prometheus's relabel_test.go: {a="foo", b="bar", c="baz"}, c mod 1000 is 976;
        // "foo\nbar" mod 1000 is 734.
        assert_eq!(hashmod("baz", 1000), 976);
        assert_eq!(hashmod("foo\nbar", 1000), 734);
        let out = run(
            &[("a", "foo"), ("b", "bar"), ("c", "baz")],
            "- source_labels: [c]\n  target_label: d\n  modulus: 1000\n  action: hashmod\n",
        )
        .unwrap();
        assert_eq!(out.get("d"), Some("976"));
        let out = run(
            &[("a", "foo")],
            "- source_labels: [a]\n  target_label: c\n  modulus: 1\n  action: hashmod\n",
        )
        .unwrap();
        assert_eq!(out.get("c"), Some("0"));
    }

    #[test]
    fn labelmap_copies_matching_names() {
        let out = run(
            &[
                ("__meta_kubernetes_pod_label_app", "web"),
                ("__meta_kubernetes_pod_label_tier", "front"),
                ("other", "x"),
            ],
            "- action: labelmap\n  regex: __meta_kubernetes_pod_label_(.+)\n",
        )
        .unwrap();
        assert_eq!(out.get("app"), Some("web"));
        assert_eq!(out.get("tier"), Some("front"));
        assert_eq!(out.get("__meta_kubernetes_pod_label_app"), Some("web"));
        assert_eq!(out.get("other"), Some("x"));
    }

    #[test]
    fn labelmap_with_replacement_template() {
        let out = run(
            &[("foo", "bar"), ("baz", "qux")],
            "- action: labelmap\n  regex: (foo)\n  replacement: ${1}_copy\n",
        )
        .unwrap();
        assert_eq!(out.get("foo_copy"), Some("bar"));
        assert_eq!(out.get("baz_copy"), None);
    }

    #[test]
    fn labeldrop_and_labelkeep() {
        let input = [("a", "1"), ("b1", "2"), ("b2", "3")];
        let out = run(&input, "- action: labeldrop\n  regex: b.\n").unwrap();
        assert_eq!(out, labels(&[("a", "1")]));
        let out = run(&input, "- action: labelkeep\n  regex: b.\n").unwrap();
        assert_eq!(out, labels(&[("b1", "2"), ("b2", "3")]));
    }

    #[test]
    fn lowercase_and_uppercase() {
        let out = run(
            &[("a", "FoO"), ("b", "bAr")],
            "- source_labels: [a]\n  target_label: lower\n  action: lowercase\n- source_labels: [b]\n  target_label: upper\n  action: uppercase\n",
        )
        .unwrap();
        assert_eq!(out.get("lower"), Some("foo"));
        assert_eq!(out.get("upper"), Some("BAR"));
    }

    #[test]
    fn rules_apply_in_order_and_stop_at_drop() {
        let yaml = "- target_label: x\n  replacement: one\n- source_labels: [x]\n  regex: one\n  action: drop\n- target_label: y\n  replacement: never\n";
        assert!(run(&[("a", "1")], yaml).is_none());
    }

    #[test]
    fn process_writes_back_into_the_builder() {
        let mut b = labels(&[("a", "1"), ("drop_me", "2")]).to_builder();
        let ok = process(
            &mut b,
            &rules(
                "- action: labeldrop\n  regex: drop_.*\n- target_label: c\n  replacement: new\n",
            ),
        );
        assert!(ok);
        assert_eq!(b.build(), labels(&[("a", "1"), ("c", "new")]));
        let mut b = labels(&[("a", "1")]).to_builder();
        assert!(!process(
            &mut b,
            &rules("- source_labels: [a]\n  regex: '1'\n  action: drop\n")
        ));
    }

    #[test]
    fn go_expand_edge_cases() {
        // `$1x` is the group named "1x": absent, so empty.
        assert_eq!(expand("(a)(b)", "ab", "$1x"), "");
        assert_eq!(expand("(a)(b)", "ab", "${1}x"), "ax");
        assert_eq!(expand("(a)(b)", "ab", "$2-$1"), "b-a");
        assert_eq!(expand("(a)(b)", "ab", "$$1"), "$1");
        assert_eq!(expand("(a)(b)", "ab", "cost: $"), "cost: $");
        assert_eq!(expand("(a)(b)", "ab", "$-"), "$-");
        assert_eq!(expand("(a)(b)", "ab", "${1"), "${1");
        assert_eq!(expand("(a)(b)", "ab", "${}"), "${}");
        // Out of range and leading zeros expand to nothing.
        assert_eq!(expand("(a)(b)", "ab", "[$3]"), "[]");
        assert_eq!(expand("(a)(b)", "ab", "[$01]"), "[]");
        assert_eq!(expand("(a)(b)", "ab", "$0"), "ab");
        // Named groups, both forms.
        assert_eq!(
            expand("(?P<first>a)(?P<second>b)", "ab", "$second.${first}"),
            "b.a"
        );
        assert_eq!(
            expand("(?P<first>a)(b)", "ab", "$first_x|${first}_x"),
            "|a_x"
        );
        // A group that did not take part is empty.
        assert_eq!(expand("(a)|(b)", "b", "[$1][$2]"), "[][b]");
    }

    #[test]
    fn validation_messages_follow_prometheus() {
        for (yaml, want) in [
            (
                "- action: hashmod\n  target_label: x\n",
                "requires non-zero modulus",
            ),
            (
                "- action: replace\n",
                "replace action requires 'target_label' value",
            ),
            (
                "- action: lowercase\n",
                "lowercase action requires 'target_label' value",
            ),
            (
                "- action: keepequal\n  source_labels: [a]\n",
                "keepequal action requires 'target_label'",
            ),
            (
                "- target_label: 1abc\n",
                "\"1abc\" is invalid 'target_label' for replace action",
            ),
            (
                "- target_label: a-$1\n",
                "\"a-$1\" is invalid 'target_label' for replace action",
            ),
            (
                "- action: hashmod\n  target_label: a-b\n  modulus: 2\n",
                "invalid 'target_label' for hashmod",
            ),
            (
                "- action: uppercase\n  target_label: x\n  replacement: y\n",
                "'replacement' can not be set for uppercase action",
            ),
            (
                "- action: labelmap\n  replacement: a-$1\n",
                "is invalid 'replacement' for labelmap action",
            ),
            (
                "- action: dropequal\n  target_label: x\n  regex: a\n",
                "dropequal action requires only 'source_labels' and `target_label`",
            ),
            (
                "- action: keepequal\n  target_label: x\n  separator: ','\n",
                "keepequal action requires only",
            ),
            (
                "- action: labeldrop\n  regex: a\n  source_labels: [b]\n",
                "labeldrop action requires only 'regex'",
            ),
            (
                "- action: labelkeep\n  target_label: b\n",
                "labelkeep action requires only 'regex'",
            ),
            (
                "- source_labels: [a-b]\n  target_label: x\n",
                "\"a-b\" is not a valid label name",
            ),
            ("- target_label: x\n  regex: '('\n", "invalid regex"),
            ("- target_label: x\n  bogus: 1\n", "bogus"),
        ] {
            let err = rule_err(yaml);
            assert!(err.contains(want), "{yaml:?}: {err}");
        }
    }

    #[test]
    fn validation_errors_carry_the_line() {
        let err = rule_err("- target_label: ok\n- action: hashmod\n  target_label: x\n");
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn templated_target_labels_are_validated_like_prometheus() {
        for ok in ["a", "_a", "${1}", "$1", "a${1}b", "${name}_x", "$a$b"] {
            assert!(is_valid_relabel_template(ok), "{ok}");
        }
        for bad in ["", "1a", "a-b", "$", "${", "${}", "${a", "a$", "$-"] {
            assert!(!is_valid_relabel_template(bad), "{bad}");
        }
    }

    #[test]
    fn explicit_defaults_are_accepted_where_only_defaults_are_allowed() {
        rules("- action: labeldrop\n  regex: x\n  separator: ';'\n  replacement: $1\n");
        rules("- action: dropequal\n  source_labels: [a]\n  target_label: b\n  regex: (.*)\n");
    }
}
