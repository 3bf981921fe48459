//! The vocabulary every other component speaks: label sets, samples, matchers and
//! time. It depends on nothing else in ODIN.
//!
//! Time is always milliseconds since the Unix epoch in an `i64`, as in Prometheus.

mod labels;
mod matcher;
mod secret;
mod time;

pub use labels::{
    InvalidLabels, Label, LabelSetCheck, Labels, LabelsBuilder, METRIC_NAME, check_label_pairs,
    hash_label_pairs, is_valid_label_name, is_valid_metric_name,
};
pub use matcher::{MatchType, Matcher, MatcherError};
pub use secret::Secret;
pub use time::{
    MAX_DURATION_MS, MAX_TIME_MS, MIN_TIME_MS, format_duration_ms, parse_api_duration_ms,
    parse_bytes, parse_duration_ms, parse_time_ms,
};

/// The bit pattern Prometheus writes as a staleness marker. It is a NaN, so it must be
/// compared by bits, never by value.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Returns the staleness marker value.
pub fn stale_nan() -> f64 {
    f64::from_bits(STALE_NAN_BITS)
}

/// True when `v` is exactly the staleness marker (not merely some NaN).
pub fn is_stale_nan(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One float sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Milliseconds since the epoch.
    pub t: i64,
    pub v: f64,
}

impl Sample {
    pub fn new(t: i64, v: f64) -> Self {
        Self { t, v }
    }

    /// Bit-exact equality: two NaNs with the same bits are equal, unlike `==`.
    pub fn bit_eq(&self, other: &Sample) -> bool {
        self.t == other.t && self.v.to_bits() == other.v.to_bits()
    }
}

/// An inclusive time interval `[min_t, max_t]` in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Interval {
    pub min_t: i64,
    pub max_t: i64,
}

impl Interval {
    pub fn new(min_t: i64, max_t: i64) -> Self {
        Self { min_t, max_t }
    }

    pub fn contains(&self, t: i64) -> bool {
        self.min_t <= t && t <= self.max_t
    }

    pub fn overlaps(&self, min_t: i64, max_t: i64) -> bool {
        self.min_t <= max_t && min_t <= self.max_t
    }
}

/// Current wall-clock time in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    use std::time::{SystemTime, UNIX_EPOCH};
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats a float as Go's `strconv.FormatFloat(v, 'g', -1, 64)` (what `promtool tsdb
/// dump` prints): the shortest digits that round-trip, in exponent form when the
/// decimal exponent is below -4 or at least 6.
pub fn format_go_g(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "+Inf".into()
        } else {
            "-Inf".into()
        };
    }
    if v == 0.0 {
        return if v.is_sign_negative() {
            "-0".into()
        } else {
            "0".into()
        };
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "1.2345e6".
    let e = format!("{v:e}");
    let Some((mantissa, exp)) = e.split_once('e') else {
        return e;
    };
    let exp: i32 = exp.parse().unwrap_or(0);
    // Go: `if shortest { eprec = 6 }; if exp < -4 || exp >= eprec { %e }`.
    if !(-4..6).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        return format!("{mantissa}e{sign}{:02}", exp.abs());
    }
    format!("{v}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_g_formatting() {
        for (v, want) in [
            (1.0, "1"),
            (0.5, "0.5"),
            (123456.0, "123456"),
            (1234567.0, "1.234567e+06"),
            (1e6, "1e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (-2.5, "-2.5"),
            (f64::INFINITY, "+Inf"),
            (f64::NAN, "NaN"),
            (1e21, "1e+21"),
        ] {
            assert_eq!(format_go_g(v), want, "{v}");
        }
    }
}
