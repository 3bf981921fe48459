//! The values a PromQL expression evaluates to, as Prometheus's API returns them.

use crate::model::{Labels, Sample};

/// One element of an instant vector: a series' labels and its value at `t`.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    pub labels: Labels,
    pub t: i64,
    pub v: f64,
}

/// One series of a range vector (matrix): labels and samples, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesPoints {
    pub labels: Labels,
    pub points: Vec<Sample>,
}

/// What a query returns. Times are Unix milliseconds.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar { t: i64, v: f64 },
    String { t: i64, v: String },
    Vector(Vec<Element>),
    Matrix(Vec<SeriesPoints>),
}

impl Value {
    /// Prometheus's name for the type, as the API's `resultType`.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Scalar { .. } => "scalar",
            Value::String { .. } => "string",
            Value::Vector(_) => "vector",
            Value::Matrix(_) => "matrix",
        }
    }
}

/// A float as Prometheus writes it in API answers and labels (Go's
/// `strconv.FormatFloat(v, 'f', -1, 64)`): the shortest decimal that reads back as
/// the same float, never in exponent form; `NaN`, `+Inf`, `-Inf`.
pub fn format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v == f64::INFINITY {
        "+Inf".to_string()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_string()
    } else {
        // Rust's `Display` for floats is the shortest round-trip form without an
        // exponent, as Go's 'f' format with precision -1.
        format!("{v}")
    }
}
