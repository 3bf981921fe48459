//! Resolving label matchers to postings, shared by the head and by blocks, with
//! Prometheus's semantics (`tsdb/querier.go` `PostingsForMatchers`): a matcher that
//! matches the empty string also selects series that lack the label, so it is applied
//! by subtracting the series whose value for the label does *not* match.

use crate::model::{MatchType, Matcher};
use crate::tsdb::postings;

/// What an index must offer to resolve matchers.
pub trait PostingsIndex {
    type Error;
    /// Series with `name="value"`, sorted.
    fn postings(&self, name: &str, value: &str) -> Result<Vec<u64>, Self::Error>;
    /// Union of the postings of every value of `name` for which `keep` is true, sorted.
    fn postings_for_values(
        &self,
        name: &str,
        keep: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Vec<u64>, Self::Error>;
    /// Every series, sorted.
    fn all_postings(&self) -> Result<Vec<u64>, Self::Error>;
}

/// The sorted refs of the series that match every matcher.
pub fn postings_for_matchers<I: PostingsIndex>(
    index: &I,
    matchers: &[Matcher],
) -> Result<Vec<u64>, I::Error> {
    let mut intersect: Vec<Vec<u64>> = Vec::new();
    let mut subtract: Vec<Vec<u64>> = Vec::new();
    let mut has_positive = false;

    for m in matchers {
        if m.matches_empty() {
            // Selects series without the label too: remove those whose value fails.
            match m.kind {
                // `a=""` : remove every series that has label a.
                MatchType::Equal => {
                    subtract.push(index.postings_for_values(&m.name, &mut |_| true)?)
                }
                // `a!="x"`: remove series with a="x".
                MatchType::NotEqual => subtract.push(index.postings(&m.name, &m.value)?),
                MatchType::Regex | MatchType::NotRegex => {
                    subtract.push(index.postings_for_values(&m.name, &mut |v| !m.matches(v))?)
                }
            }
        } else {
            has_positive = true;
            let p = match m.kind {
                MatchType::Equal => index.postings(&m.name, &m.value)?,
                _ => index.postings_for_values(&m.name, &mut |v| m.matches(v))?,
            };
            if p.is_empty() {
                return Ok(Vec::new());
            }
            intersect.push(p);
        }
    }
    if !has_positive {
        intersect.push(index.all_postings()?);
    }
    let lists: Vec<&[u64]> = intersect.iter().map(Vec::as_slice).collect();
    let mut result = postings::intersect(&lists);
    for s in &subtract {
        if result.is_empty() {
            break;
        }
        result = postings::without(&result, s);
    }
    Ok(result)
}
