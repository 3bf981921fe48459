//! Label matchers with Prometheus's semantics: regexes are fully anchored, and a
//! matcher against a missing label sees the empty string.

use std::fmt;

use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchType {
    Equal,
    NotEqual,
    Regex,
    NotRegex,
}

impl MatchType {
    pub fn as_str(&self) -> &'static str {
        match self {
            MatchType::Equal => "=",
            MatchType::NotEqual => "!=",
            MatchType::Regex => "=~",
            MatchType::NotRegex => "!~",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("invalid regex {pattern:?} in matcher: {source}")]
pub struct MatcherError {
    pattern: String,
    #[source]
    source: regex::Error,
}

/// `name op value`, e.g. `job=~"node|gpu"`.
#[derive(Clone)]
pub struct Matcher {
    pub kind: MatchType,
    pub name: String,
    pub value: String,
    /// The anchored regex for `=~` and `!~`.
    regex: Option<Regex>,
}

impl Matcher {
    pub fn new(
        kind: MatchType,
        name: impl Into<String>,
        value: impl Into<String>,
    ) -> Result<Self, MatcherError> {
        let value = value.into();
        let regex = match kind {
            MatchType::Regex | MatchType::NotRegex => Some(
                Regex::new(&format!("^(?s:{value})$")).map_err(|source| MatcherError {
                    pattern: value.clone(),
                    source,
                })?,
            ),
            _ => None,
        };
        Ok(Self {
            kind,
            name: name.into(),
            value,
            regex,
        })
    }

    /// An equality matcher; cannot fail.
    pub fn equal(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            kind: MatchType::Equal,
            name: name.into(),
            value: value.into(),
            regex: None,
        }
    }

    /// Whether `value` (the empty string for a missing label) satisfies the matcher.
    pub fn matches(&self, value: &str) -> bool {
        match self.kind {
            MatchType::Equal => self.value == value,
            MatchType::NotEqual => self.value != value,
            MatchType::Regex => self.regex.as_ref().is_some_and(|r| r.is_match(value)),
            MatchType::NotRegex => !self.regex.as_ref().is_some_and(|r| r.is_match(value)),
        }
    }

    /// True when the matcher also selects series that lack the label entirely.
    pub fn matches_empty(&self) -> bool {
        self.matches("")
    }
}

/// Matchers are equal when they match alike: the same kind, name and value (the
/// regex follows from the value).
impl PartialEq for Matcher {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.name == other.name && self.value == other.value
    }
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}{:?}", self.name, self.kind.as_str(), self.value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_is_fully_anchored() {
        let m = Matcher::new(MatchType::Regex, "job", "no").unwrap();
        assert!(m.matches("no"));
        assert!(!m.matches("node"));
        let m = Matcher::new(MatchType::Regex, "job", "no.*|gpu").unwrap();
        assert!(m.matches("node") && m.matches("gpu") && !m.matches("xgpu"));
    }

    #[test]
    fn negative_matchers_and_empty_values() {
        let m = Matcher::new(MatchType::NotEqual, "a", "").unwrap();
        assert!(!m.matches_empty());
        let m = Matcher::new(MatchType::NotRegex, "a", "x").unwrap();
        assert!(m.matches_empty() && !m.matches("x"));
    }

    #[test]
    fn bad_regex_is_an_error() {
        assert!(Matcher::new(MatchType::Regex, "a", "(").is_err());
    }
}
