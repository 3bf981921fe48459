//! Label sets: sorted by name, names unique, as Prometheus keeps them.

use arcstr::ArcStr;
use std::fmt;
use triomphe::ThinArc;

/// The label that carries the metric name.
pub const METRIC_NAME: &str = "__name__";

/// What each byte may be in a name: one table lookup a byte, where the checks
/// run for every label of every remote-written series (they were ~5% of ingest CPU
/// as chains of comparisons).
const LETTER: u8 = 1;
const DIGIT: u8 = 2;
const COLON: u8 = 4;
static NAME_BYTE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        t[i] = if b.is_ascii_alphabetic() || b == b'_' {
            LETTER
        } else if b.is_ascii_digit() {
            DIGIT
        } else if b == b':' {
            COLON
        } else {
            0
        };
        i += 1;
    }
    t
};

/// Whether `name` is one byte of `first` followed by bytes of `rest` (classes).
fn name_matches(name: &str, first: u8, rest: u8) -> bool {
    match name.as_bytes().split_first() {
        Some((b, tail)) => {
            NAME_BYTE[usize::from(*b)] & first != 0
                && tail.iter().all(|b| NAME_BYTE[usize::from(*b)] & rest != 0)
        }
        None => false,
    }
}

/// Label names as Prometheus 2.42 allows them: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub fn is_valid_label_name(name: &str) -> bool {
    name_matches(name, LETTER, LETTER | DIGIT)
}

/// Metric names as Prometheus 2.42 allows them: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    name_matches(name, LETTER | COLON, LETTER | DIGIT | COLON)
}

/// Why a label set may not be stored. Every ingest path (remote write, scrape after
/// relabelling) checks with [`LabelSetCheck`], so that nothing stored can later be
/// written out as exposition text that reads differently (a metric name holding a
/// newline would forge lines in `/federate`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidLabels {
    #[error("invalid label name {0:?}")]
    LabelName(String),
    #[error("invalid metric name {0:?}")]
    MetricName(String),
    #[error("empty metric name")]
    EmptyMetricName,
    #[error("duplicate label name {0:?}")]
    Duplicate(String),
    #[error("labels not sorted: {0:?} before {1:?}")]
    NotSorted(String, String),
    #[error("empty label set")]
    Empty,
}

/// Longest name an error message repeats: the client sent the rest, and a message
/// holding a megabyte of label is a cost of its own.
const SHOWN_NAME_BYTES: usize = 128;

fn shown(s: &str) -> String {
    if s.len() <= SHOWN_NAME_BYTES {
        return s.to_string();
    }
    let mut end = SHOWN_NAME_BYTES;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Checks a label set pair by pair, in the order the pairs arrive, without
/// allocating: decoders call [`LabelSetCheck::push`] as they read each pair and stop
/// at the first error, so no invalid set is ever materialised. The rules are
/// Prometheus 2.42's (`labels.IsValid` and the TSDB's duplicate check): label names
/// `[a-zA-Z_][a-zA-Z0-9_]*`, a metric name `[a-zA-Z_:][a-zA-Z0-9_:]*`, names sorted
/// and unique, at least one non-empty value (an empty value means the label is
/// absent). An empty `__name__` is refused, not dropped: a sender that sends one has
/// a bug worth hearing about.
#[derive(Debug, Default)]
pub struct LabelSetCheck<'a> {
    prev: Option<&'a str>,
    present: usize,
}

impl<'a> LabelSetCheck<'a> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Checks the next pair. Returns whether the pair is present (its value is not
    /// empty).
    pub fn push(&mut self, name: &'a str, value: &'a str) -> Result<bool, InvalidLabels> {
        if !is_valid_label_name(name) {
            return Err(InvalidLabels::LabelName(shown(name)));
        }
        if name == METRIC_NAME {
            if value.is_empty() {
                return Err(InvalidLabels::EmptyMetricName);
            }
            if !is_valid_metric_name(value) {
                return Err(InvalidLabels::MetricName(shown(value)));
            }
        }
        if let Some(prev) = self.prev {
            match prev.cmp(name) {
                std::cmp::Ordering::Equal => return Err(InvalidLabels::Duplicate(shown(name))),
                std::cmp::Ordering::Greater => {
                    return Err(InvalidLabels::NotSorted(shown(prev), shown(name)));
                }
                std::cmp::Ordering::Less => {}
            }
        }
        self.prev = Some(name);
        let present = !value.is_empty();
        self.present += usize::from(present);
        Ok(present)
    }

    /// Ends the set: refused when no label is present.
    pub fn finish(self) -> Result<(), InvalidLabels> {
        if self.present == 0 {
            return Err(InvalidLabels::Empty);
        }
        Ok(())
    }
}

/// Checks a whole label set (see [`LabelSetCheck`]).
pub fn check_label_pairs<'a>(
    pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), InvalidLabels> {
    let mut check = LabelSetCheck::new();
    for (n, v) in pairs {
        check.push(n, v)?;
    }
    check.finish()
}

/// One label pair. Names and values are reference-counted so that a label set can be
/// cloned cheaply between the head, queriers and the WAL encoder. `ArcStr` is a thin
/// (8-byte) pointer, half of `Arc<str>`: a pair costs 16 bytes, which with a million
/// series of ten labels each is 160 MB less than fat pointers would take.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Label {
    pub name: ArcStr,
    pub value: ArcStr,
}

impl Label {
    pub fn new(name: impl Into<ArcStr>, value: impl Into<ArcStr>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

impl fmt::Debug for Label {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={:?}", self.name, self.value)
    }
}

/// A set of labels sorted by name with no duplicate names and no empty values.
///
/// The derived ordering compares pair by pair (name, then value) and then by length,
/// which is exactly Prometheus's `labels.Compare`, so "sorted series" means the same
/// thing in ODIN and in Prometheus.
///
/// One thin pointer (8 bytes) to a shared allocation holding the count, the length and
/// the labels: the head keeps one per series, so the pointer's size is paid a million
/// times over.
#[derive(Clone)]
pub struct Labels(ThinArc<(), Label>);

impl Default for Labels {
    fn default() -> Self {
        Self::from_vec(Vec::new())
    }
}

impl PartialEq for Labels {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Labels {}

impl std::hash::Hash for Labels {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

impl PartialOrd for Labels {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Labels {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_slice().cmp(other.as_slice())
    }
}

impl Labels {
    /// The empty label set.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Builds a label set from pairs in any order. Later duplicates of a name win;
    /// empty values are dropped (an empty value means "label absent" in Prometheus).
    pub fn from_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> Self
    where
        N: Into<ArcStr>,
        V: Into<ArcStr>,
    {
        let mut b = LabelsBuilder::default();
        for (n, v) in pairs {
            b.set(n, v);
        }
        b.build()
    }

    /// Wraps labels that the caller guarantees are sorted by name, unique, and non-empty
    /// (for example read back from an index). Checked in debug builds.
    pub fn from_sorted(labels: Vec<Label>) -> Self {
        debug_assert!(labels.windows(2).all(|w| w[0].name < w[1].name));
        Self::from_vec(labels)
    }

    fn from_vec(labels: Vec<Label>) -> Self {
        Self(ThinArc::from_header_and_iter((), labels.into_iter()))
    }

    /// Checks that `labels` is sorted by name with unique names; the shape every
    /// producer outside ODIN (remote write, a block on disk) must give us.
    pub fn check_sorted_unique(labels: &[Label]) -> Result<(), String> {
        for w in labels.windows(2) {
            if w[0].name == w[1].name {
                return Err(format!("duplicate label name {:?}", &*w[0].name));
            }
            if w[0].name > w[1].name {
                return Err(format!(
                    "labels not sorted: {:?} before {:?}",
                    &*w[0].name, &*w[1].name
                ));
            }
        }
        Ok(())
    }

    /// An identity for this particular allocation (equal for clones of one label set,
    /// usually different for equal sets built separately): a cheap memo key.
    pub fn identity(&self) -> usize {
        self.0.as_ptr() as usize
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, Label> {
        self.as_slice().iter()
    }

    pub fn as_slice(&self) -> &[Label] {
        &self.0.slice
    }

    /// Whether both are the same allocation (clones of one label set), which implies
    /// that they are equal; cheaper than comparing them.
    pub fn ptr_eq(&self, other: &Labels) -> bool {
        std::ptr::eq(self.0.ptr(), other.0.ptr())
    }

    /// The value of label `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        let labels = self.as_slice();
        labels
            .binary_search_by(|l| (*l.name).cmp(name))
            .ok()
            .and_then(|i| labels.get(i))
            .map(|l| &*l.value)
    }

    /// Checks the set as every ingest path must before storing it (see
    /// [`LabelSetCheck`]).
    pub fn validate(&self) -> Result<(), InvalidLabels> {
        check_label_pairs(self.iter().map(|l| (&*l.name, &*l.value)))
    }

    /// The metric name, if present.
    pub fn metric_name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    /// A stable 64-bit hash of the label set, used to find series in the head; equal
    /// to [`hash_label_pairs`] over the same pairs.
    pub fn stable_hash(&self) -> u64 {
        hash_label_pairs(self.iter().map(|l| (&*l.name, &*l.value)))
    }

    /// Whether this set equals the given sorted pairs.
    pub fn eq_pairs(&self, pairs: &[(&str, &str)]) -> bool {
        self.len() == pairs.len()
            && self
                .iter()
                .zip(pairs)
                .all(|(l, (n, v))| &*l.name == *n && &*l.value == *v)
    }

    /// A builder starting from this set, to add, change or remove labels.
    pub fn to_builder(&self) -> LabelsBuilder {
        LabelsBuilder {
            labels: self.as_slice().to_vec(),
        }
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Formats as Prometheus does: `{a="1", b="2"}`.
impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("{")?;
        for (i, l) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}={:?}", l.name, &*l.value)?;
        }
        f.write_str("}")
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = &'a Label;
    type IntoIter = std::slice::Iter<'a, Label>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// A 64-bit hash of sorted label pairs: xxh3 over names and values with a separator
/// byte that cannot occur in UTF-8, so `{ab="c"}` and `{a="bc"}` differ. Stable across
/// processes and versions of ODIN's dependencies.
///
/// The pairs are laid out in a buffer on the stack and hashed in one call: feeding the
/// streaming hasher four pieces per label cost several times the hashing itself for
/// a typical label set of ~100 bytes. A longer set goes on through the streaming
/// hasher, which gives the same value (xxh3's streaming and one-shot forms agree).
pub fn hash_label_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> u64 {
    const INLINE_BYTES: usize = 512;
    fn stream_pair(h: &mut xxhash_rust::xxh3::Xxh3Default, n: &str, v: &str) {
        h.update(n.as_bytes());
        h.update(&[0xff]);
        h.update(v.as_bytes());
        h.update(&[0xff]);
    }
    let mut buf = [0u8; INLINE_BYTES];
    let mut len = 0;
    let mut pairs = pairs.into_iter();
    while let Some((n, v)) = pairs.next() {
        let end = len + n.len() + v.len() + 2;
        if end > INLINE_BYTES {
            let mut h = xxhash_rust::xxh3::Xxh3Default::new();
            h.update(&buf[..len]);
            stream_pair(&mut h, n, v);
            for (n, v) in pairs {
                stream_pair(&mut h, n, v);
            }
            return h.digest();
        }
        let value_at = len + n.len() + 1;
        buf[len..value_at - 1].copy_from_slice(n.as_bytes());
        buf[value_at - 1] = 0xff;
        buf[value_at..end - 1].copy_from_slice(v.as_bytes());
        buf[end - 1] = 0xff;
        len = end;
    }
    xxhash_rust::xxh3::xxh3_64(&buf[..len])
}

/// Builds a [`Labels`] by setting and deleting names.
#[derive(Default, Clone, Debug)]
pub struct LabelsBuilder {
    labels: Vec<Label>,
}

impl LabelsBuilder {
    /// Sets `name` to `value`; an empty value deletes the label.
    pub fn set(&mut self, name: impl Into<ArcStr>, value: impl Into<ArcStr>) -> &mut Self {
        let name = name.into();
        let value = value.into();
        match self.labels.iter().position(|l| l.name == name) {
            Some(i) if value.is_empty() => {
                self.labels.remove(i);
            }
            Some(i) => self.labels[i].value = value,
            None if value.is_empty() => {}
            None => self.labels.push(Label { name, value }),
        }
        self
    }

    pub fn delete(&mut self, name: &str) -> &mut Self {
        self.labels.retain(|l| &*l.name != name);
        self
    }

    pub fn build(&self) -> Labels {
        let mut v = self.labels.clone();
        v.sort();
        Labels::from_vec(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn from_pairs_sorts_and_drops_empty_values() {
        let l = Labels::from_pairs([("b", "2"), ("a", "1"), ("c", "")]);
        assert_eq!(l.to_string(), r#"{a="1", b="2"}"#);
        assert_eq!(l.get("a"), Some("1"));
        assert_eq!(l.get("c"), None);
    }

    #[test]
    fn ordering_matches_prometheus_compare() {
        let a = Labels::from_pairs([("a", "1")]);
        let b = Labels::from_pairs([("a", "1"), ("b", "1")]);
        let c = Labels::from_pairs([("a", "2")]);
        assert!(a < b && b < c);
    }

    #[test]
    fn names_are_checked_as_prometheus_2_42_checks_them() {
        for ok in ["up", "a:b", ":x", "_", "node_cpu_seconds_total", "A9"] {
            assert!(is_valid_metric_name(ok), "{ok}");
        }
        for bad in [
            "",
            "9a",
            "a-b",
            "a b",
            "injected\nline",
            "é",
            "a{b}",
            "a\"b",
        ] {
            assert!(!is_valid_metric_name(bad), "{bad:?}");
        }
        assert!(is_valid_label_name("_a9") && !is_valid_label_name("a:b"));
    }

    #[test]
    fn the_byte_table_agrees_with_the_rules_for_every_byte() {
        let letter = |b: u8| b.is_ascii_alphabetic() || b == b'_';
        for b in 0..=255u8 {
            for (name, first_ok, rest_ok) in [
                (vec![b], letter(b), true),
                (vec![b'a', b], true, letter(b) || b.is_ascii_digit()),
            ] {
                let Ok(name) = std::str::from_utf8(&name) else {
                    continue;
                };
                assert_eq!(is_valid_label_name(name), first_ok && rest_ok, "{name:?}");
                let metric_first = first_ok || b == b':' && name.len() == 1;
                let metric_rest = rest_ok || b == b':';
                assert_eq!(
                    is_valid_metric_name(name),
                    metric_first && metric_rest,
                    "{name:?}"
                );
            }
        }
    }

    #[test]
    fn label_set_check_names_the_first_problem() {
        let cases: [(&[(&str, &str)], InvalidLabels); 8] = [
            (
                &[("__name__", "up\ninjected_metric{job=\"victim\"} 12345")],
                { InvalidLabels::MetricName("up\ninjected_metric{job=\"victim\"} 12345".into()) },
            ),
            (&[("", "")], InvalidLabels::LabelName("".into())),
            (
                &[("__name__", "up"), ("a-b", "1")],
                InvalidLabels::LabelName("a-b".into()),
            ),
            (&[("__name__", "")], InvalidLabels::EmptyMetricName),
            (
                &[("a", "1"), ("a", "2")],
                InvalidLabels::Duplicate("a".into()),
            ),
            (
                &[("b", "1"), ("a", "2")],
                InvalidLabels::NotSorted("b".into(), "a".into()),
            ),
            (&[("a", "")], InvalidLabels::Empty),
            (&[], InvalidLabels::Empty),
        ];
        for (pairs, want) in cases {
            assert_eq!(
                check_label_pairs(pairs.iter().copied()),
                Err(want),
                "{pairs:?}"
            );
        }
        assert_eq!(check_label_pairs([("__name__", "up"), ("job", "")]), Ok(()));
        // A huge name is not repeated whole in the message.
        let long = "-".repeat(1 << 20);
        let msg = check_label_pairs([(long.as_str(), "1")])
            .unwrap_err()
            .to_string();
        assert!(msg.len() < 200, "{}", msg.len());
        let labels = Labels::from_pairs([("__name__", "bad name")]);
        assert!(labels.validate().is_err());
        assert!(Labels::from_pairs([("__name__", "ok")]).validate().is_ok());
    }

    #[test]
    fn check_sorted_unique_rejects_duplicates_and_disorder() {
        let dup = vec![Label::new("a", "1"), Label::new("a", "2")];
        assert!(Labels::check_sorted_unique(&dup).is_err());
        let unsorted = vec![Label::new("b", "1"), Label::new("a", "2")];
        assert!(Labels::check_sorted_unique(&unsorted).is_err());
    }

    /// The hash is xxh3 of `name 0xff value 0xff …`, whether the pairs fit the
    /// inline buffer or spill past it into the streaming hasher.
    #[test]
    fn label_hash_is_xxh3_of_the_pairs_at_every_length() {
        let spelled = |pairs: &[(String, String)]| {
            let mut bytes = Vec::new();
            for (n, v) in pairs {
                bytes.extend_from_slice(n.as_bytes());
                bytes.push(0xff);
                bytes.extend_from_slice(v.as_bytes());
                bytes.push(0xff);
            }
            xxhash_rust::xxh3::xxh3_64(&bytes)
        };
        let mut pairs = Vec::new();
        for i in 0..60 {
            pairs.push((format!("name_{i:02}"), "v".repeat(i * 3)));
            let got = hash_label_pairs(pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())));
            assert_eq!(got, spelled(&pairs), "{} pairs", pairs.len());
        }
        // Well past the inline buffer, and one value alone longer than it.
        assert!(
            pairs
                .iter()
                .map(|(n, v)| n.len() + v.len() + 2)
                .sum::<usize>()
                > 4096
        );
        let long = [("a".to_string(), "x".repeat(2000))];
        let got = hash_label_pairs(long.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        assert_eq!(got, spelled(&long));
        let l = Labels::from_pairs([("__name__", "up"), ("job", "odin")]);
        assert_eq!(
            l.stable_hash(),
            xxhash_rust::xxh3::xxh3_64(b"__name__\xffup\xffjob\xffodin\xff")
        );
        assert_eq!(hash_label_pairs([]), xxhash_rust::xxh3::xxh3_64(b""));
    }

    #[test]
    fn stable_hash_separates_name_and_value_boundaries() {
        let a = Labels::from_pairs([("ab", "c")]);
        let b = Labels::from_pairs([("a", "bc")]);
        assert_ne!(a.stable_hash(), b.stable_hash());
    }
}
