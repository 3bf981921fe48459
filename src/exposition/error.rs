//! The one error the exposition parsers return.

use thiserror::Error;

/// A scrape body that is not valid in its format. Always "bad data": the scrape fails,
/// the target stays up to be tried again.
///
/// Displays as `line 12: expected '=' after label name "foo"`.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line of the body where the problem was found.
    pub line: usize,
    /// What was wrong, lowercase, without the line number.
    pub message: String,
}

impl ParseError {
    pub fn new(line: usize, message: impl Into<String>) -> Self {
        Self {
            line,
            message: message.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, ParseError>;
