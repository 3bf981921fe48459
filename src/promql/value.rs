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

/// A float as Prometheus's API writes sample values: Go's
/// `strconv.FormatFloat(v, 'f', -1, 64)`, except in exponent form (`'e'`) for
/// magnitudes below 1e-6 or from 1e21 on; `NaN`, `+Inf`, `-Inf`.
pub fn format_float(v: f64) -> String {
    let a = v.abs();
    if a != 0.0 && a.is_finite() && !(1e-6..1e21).contains(&a) {
        format_exponent(v)
    } else {
        format_plain(v)
    }
}

/// [`format_float`] appended to `out`, without an intermediate string in the common
/// case (plain notation): what the query API writes for every point.
pub fn write_float(out: &mut String, v: f64) {
    use std::fmt::Write as _;
    let a = v.abs();
    if !v.is_finite() || (a != 0.0 && !(1e-6..1e21).contains(&a)) {
        out.push_str(&format_float(v));
        return;
    }
    let start = out.len();
    let _ = write!(out, "{v}");
    let written = out.get(start..).unwrap_or("");
    let frac_digits = written.find('.').map_or(0, |dot| written.len() - dot - 1);
    // Go's ties-to-even, as in `format_plain`.
    if frac_digits > 0 && exact_fraction_digits(v) == frac_digits + 1 {
        out.truncate(start);
        let _ = write!(out, "{v:.frac_digits$}");
    }
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)` (`count_values` labels use this form):
/// the shortest decimal that reads back as the same float, never with an exponent.
pub fn format_plain(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_string();
    } else if v == f64::INFINITY {
        return "+Inf".to_string();
    } else if v == f64::NEG_INFINITY {
        return "-Inf".to_string();
    }
    // Rust's `Display` is also the shortest round-trip form without an exponent. The
    // one difference: when the float lies exactly halfway between the two shortest
    // candidates, Go rounds to the even digit. That happens exactly when the float's
    // exact decimal expansion has one fractional digit more than the shortest form;
    // Rust's fixed-precision formatting rounds half to even, as Go.
    let s = format!("{v}");
    let frac_digits = s.find('.').map_or(0, |dot| s.len() - dot - 1);
    if frac_digits > 0 && exact_fraction_digits(v) == frac_digits + 1 {
        return format!("{v:.frac_digits$}");
    }
    s
}

/// Go's `'e'` format with the shortest digits: `1e-09`, `1.5e+21`.
fn format_exponent(v: f64) -> String {
    let s = format!("{v:e}");
    match s.split_once('e') {
        Some((mantissa, exp)) => {
            let (sign, digits) = match exp.strip_prefix('-') {
                Some(d) => ('-', d),
                None => ('+', exp),
            };
            format!("{mantissa}e{sign}{digits:0>2}")
        }
        None => s,
    }
}

/// How many fractional decimal digits the exact value of `v` has (a float is a
/// dyadic fraction `m / 2^k`, whose decimal expansion has exactly `k` of them).
fn exact_fraction_digits(v: f64) -> usize {
    let bits = v.to_bits();
    let exp_bits = ((bits >> 52) & 0x7ff) as i64;
    let mut mantissa = bits & ((1u64 << 52) - 1);
    let mut exp = if exp_bits == 0 {
        -1074
    } else {
        mantissa |= 1 << 52;
        exp_bits - 1075
    };
    if mantissa == 0 {
        return 0;
    }
    let tz = i64::from(mantissa.trailing_zeros());
    exp += tz;
    if exp >= 0 { 0 } else { (-exp) as usize }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_are_written_as_prometheus_writes_them() {
        for (v, want) in [
            (0.0, "0"),
            (1.0, "1"),
            (-2.5, "-2.5"),
            (0.1, "0.1"),
            (1e-9, "1e-09"),
            (-1.5e-7, "-1.5e-07"),
            (1e21, "1e+21"),
            (1.2345e300, "1.2345e+300"),
            (999999999999999900000.0, "999999999999999900000"),
            (0.000001, "0.000001"),
            // Exactly halfway between two shortest forms: Go rounds to even.
            (199_020_070_467_049.0 + 0.625, "199020070467049.62"),
            (0.125, "0.125"),
            (f64::NAN, "NaN"),
            (f64::NEG_INFINITY, "-Inf"),
        ] {
            assert_eq!(format_float(v), want, "{v:e}");
            let mut out = String::from("x");
            write_float(&mut out, v);
            assert_eq!(out, format!("x{want}"), "{v:e}");
        }
        assert_eq!(format_plain(1e-9), "0.000000001");
    }
}
