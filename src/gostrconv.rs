//! Go's `strconv` number syntax, for where ODIN must read a number exactly as a Go
//! program would: node_exporter's procfs parsers, Go templates (Alertmanager's and
//! LogQL's), Prometheus's histogram bucket bounds.
//!
//! - [`parse_uint`] and [`parse_int`] are `ParseUint(s, 0, 64)` and
//!   `ParseInt(s, 0, 64)`: a `0x`, `0o`, `0b` or bare `0` (octal) prefix, `_` between
//!   digits, a sign only for the signed one.
//! - [`parse_float`] is `ParseFloat(s, 64)`: decimal with a point and an exponent,
//!   hexadecimal with a `p` exponent, `_` between digits, `Inf`/`Infinity` with or
//!   without a sign and `NaN` without one, in any case; a finite number out of range
//!   is refused (Go's `ErrRange`).
//! - [`parse_duration`] is `time.ParseDuration`, the other number syntax Go programs
//!   read from text (kingpin's duration flags, LogQL's `unwrap duration`, the
//!   templates' `duration`), and [`duration_seconds`] `Duration.Seconds`.
//! - [`parse_humanize_bytes`] is go-humanize's `ParseBytes` (LogQL's byte sizes,
//!   the templates' `bytes`).

/// The bits of Go's `math.NaN()`, which `ParseFloat("NaN")` returns (Rust's
/// `f64::NAN` has other bits; Prometheus tells its stale marker from NaN by them).
pub const GO_NAN_BITS: u64 = 0x7ff8_0000_0000_0001;

/// Go's `underscoreOK`: each `_` follows a digit or the base prefix and is followed
/// by a digit. `s` may start with a sign.
pub fn underscores_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let mut i = usize::from(b.first().is_some_and(|&c| c == b'+' || c == b'-'));
    // What came last: '^' the start, '0' a digit or base prefix, '_', '!' other.
    let mut saw = b'^';
    let mut hex = false;
    if b.len() - i >= 2 && b[i] == b'0' && matches!(b[i + 1] | 0x20, b'b' | b'o' | b'x') {
        hex = b[i + 1] | 0x20 == b'x';
        i += 2;
        saw = b'0';
    }
    for &c in &b[i..] {
        if c.is_ascii_digit() || (hex && c.is_ascii_hexdigit()) {
            saw = b'0';
        } else if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
        } else {
            if saw == b'_' {
                return false;
            }
            saw = b'!';
        }
    }
    saw != b'_'
}

/// Go's `strconv.ParseUint(s, 0, 64)`.
pub fn parse_uint(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    let (base, digits) = match b {
        [b'0', p, _, ..] if matches!(p | 0x20, b'b' | b'o' | b'x') => {
            let base = match p | 0x20 {
                b'b' => 2,
                b'o' => 8,
                _ => 16,
            };
            (base, &s[2..])
        }
        [b'0', _, ..] => (8, &s[1..]),
        [] => return None,
        _ => (10, s),
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    for c in digits.chars() {
        if c == '_' {
            underscores = true;
            continue;
        }
        let d = c.to_digit(base)?;
        n = n.checked_mul(u64::from(base))?.checked_add(u64::from(d))?;
    }
    if underscores && !underscores_ok(s) {
        return None;
    }
    Some(n)
}

/// Go's `strconv.ParseInt(s, 0, 64)`.
pub fn parse_int(s: &str) -> Option<i64> {
    let (negative, body) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let magnitude = parse_uint(body)?;
    if negative {
        (magnitude <= 1 << 63).then(|| (magnitude as i64).wrapping_neg())
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// [`parse_float`] with Go's error text for what it refuses (`strconv.ParseFloat:
/// parsing "x": invalid syntax`, or `value out of range`), which Loki puts in
/// `__error_details__`.
pub fn parse_float_or_go_error(s: &str) -> Result<f64, String> {
    parse_float(s).ok_or_else(|| {
        let why = if s.parse::<f64>().is_ok_and(f64::is_infinite)
            && !s.to_ascii_lowercase().contains("inf")
        {
            "value out of range"
        } else {
            "invalid syntax"
        };
        format!("strconv.ParseFloat: parsing {s:?}: {why}")
    })
}

/// Whether Rust's float parser reads `s` as Go's does: over digits, a point, an
/// exponent and signs the two agree.
fn plain_decimal(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
}

/// Go's `strconv.ParseFloat(s, 64)`.
pub fn parse_float(s: &str) -> Option<f64> {
    // The common case, without allocating: `1`, `0.25`, `-1e3`.
    if plain_decimal(s) {
        return s.parse::<f64>().ok().filter(|f| f.is_finite());
    }
    let (negative, body) = match s.as_bytes().first()? {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let signed = |v: f64| if negative { -v } else { v };
    if body.eq_ignore_ascii_case("inf") || body.eq_ignore_ascii_case("infinity") {
        return Some(signed(f64::INFINITY));
    }
    if s.eq_ignore_ascii_case("nan") {
        return Some(f64::from_bits(GO_NAN_BITS));
    }
    if !s.is_ascii() || !underscores_ok(s) {
        return None;
    }
    let clean: String = body.chars().filter(|&c| c != '_').collect();
    let value = match clean.get(..2) {
        Some("0x" | "0X") => parse_hex_float(&clean[2..].to_ascii_lowercase())?,
        // A second sign (`+-1`) or another character is not a number.
        _ if clean.starts_with(['+', '-']) || !plain_decimal(&clean) => return None,
        _ => clean.parse::<f64>().ok()?,
    };
    value.is_finite().then(|| signed(value))
}

/// An unsigned hexadecimal float after its `0x`: hex digits with an optional point,
/// then a mandatory binary exponent `p[+-]digits`.
fn parse_hex_float(s: &str) -> Option<f64> {
    let (mantissa, exp) = s.split_once('p')?;
    let exp_digits = exp.strip_prefix(['+', '-']).unwrap_or(exp);
    if exp_digits.is_empty() || !exp_digits.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    // Clamp: anything beyond this under- or overflows anyway.
    let exp_abs: i64 = exp_digits
        .get(..exp_digits.len().min(7))
        .and_then(|d| d.parse().ok())
        .unwrap_or(0);
    let mut exp2 = if exp.starts_with('-') {
        -exp_abs
    } else {
        exp_abs
    };

    let mut mant: u128 = 0;
    let mut sticky = false;
    let mut digits = 0;
    let mut frac = false;
    for c in mantissa.chars() {
        if c == '.' {
            if frac {
                return None;
            }
            frac = true;
            continue;
        }
        let d = c.to_digit(16)?;
        digits += 1;
        if mant >> 120 == 0 {
            mant = mant * 16 + u128::from(d);
            if frac {
                exp2 -= 4;
            }
        } else {
            sticky |= d != 0;
            if !frac {
                exp2 += 4;
            }
        }
    }
    if digits == 0 {
        return None;
    }
    if sticky {
        mant |= 1;
    }
    let mut v = mant as f64;
    while exp2 != 0 && v != 0.0 && v.is_finite() {
        let step = exp2.clamp(-1000, 1000);
        v *= 2f64.powi(step as i32);
        exp2 -= step;
    }
    Some(v)
}

/// Go's `time.ParseDuration`, in nanoseconds: an optional sign, then one or more
/// decimal numbers (a fraction allowed, digits on at least one side of the point),
/// each followed by a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`; no days);
/// `0` alone needs no unit. What does not fit an `i64` of nanoseconds is refused.
/// The error is Go's text (`time: invalid duration "5x"`, `time: missing unit in
/// duration "5"`, `time: unknown unit "d" in duration "1d"`).
pub fn parse_duration(orig: &str) -> Result<i64, String> {
    let invalid = || format!("time: invalid duration {}", go_time_quote(orig));
    // Go sums in a u64 and allows 2^63 itself only for a negative duration.
    let in_range = |v: &u64| *v <= 1 << 63;
    let (negative, mut rest) = match orig.as_bytes().first() {
        Some(b'-') => (true, &orig[1..]),
        Some(b'+') => (false, &orig[1..]),
        _ => (false, orig),
    };
    if rest == "0" {
        return Ok(0);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total: u64 = 0;
    while !rest.is_empty() {
        if !rest.starts_with(|c: char| c == '.' || c.is_ascii_digit()) {
            return Err(invalid());
        }
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let mut whole: u64 = 0;
        for d in rest.bytes().take(int_len) {
            whole = whole
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(d - b'0')))
                .filter(in_range)
                .ok_or_else(invalid)?;
        }
        rest = &rest[int_len..];
        // The fraction: digits past what fits are dropped, as Go's
        // `leadingFraction` drops them.
        let (mut fraction, mut scale, mut frac_len) = (0u64, 1f64, 0usize);
        if let Some(after) = rest.strip_prefix('.') {
            frac_len = after.bytes().take_while(u8::is_ascii_digit).count();
            for d in after.bytes().take(frac_len) {
                match fraction
                    .checked_mul(10)
                    .and_then(|v| v.checked_add(u64::from(d - b'0')))
                    .filter(in_range)
                {
                    Some(v) => {
                        fraction = v;
                        scale *= 10.0;
                    }
                    None => break,
                }
            }
            rest = &after[frac_len..];
        }
        if int_len == 0 && frac_len == 0 {
            return Err(invalid());
        }
        let unit_len = rest
            .find(|c: char| c == '.' || c.is_ascii_digit())
            .unwrap_or(rest.len());
        if unit_len == 0 {
            return Err(format!(
                "time: missing unit in duration {}",
                go_time_quote(orig)
            ));
        }
        let unit_name = &rest[..unit_len];
        let unit: u64 = match unit_name {
            "ns" => 1,
            "us" | "\u{b5}s" | "\u{3bc}s" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => {
                return Err(format!(
                    "time: unknown unit {} in duration {}",
                    go_time_quote(unit_name),
                    go_time_quote(orig)
                ));
            }
        };
        rest = &rest[unit_len..];
        let mut value = whole
            .checked_mul(unit)
            .filter(in_range)
            .ok_or_else(invalid)?;
        if fraction > 0 {
            // Go's float arithmetic, truncated.
            value = value
                .checked_add((fraction as f64 * (unit as f64 / scale)) as u64)
                .filter(in_range)
                .ok_or_else(invalid)?;
        }
        total = total
            .checked_add(value)
            .filter(in_range)
            .ok_or_else(invalid)?;
    }
    match i64::try_from(total) {
        Ok(v) if negative => Ok(-v),
        Ok(v) => Ok(v),
        Err(_) if negative => Ok(i64::MIN),
        Err(_) => Err(invalid()),
    }
}

/// Go's `Duration.Seconds`: whole seconds, plus the nanoseconds left as a fraction.
pub fn duration_seconds(ns: i64) -> f64 {
    (ns / 1_000_000_000) as f64 + (ns % 1_000_000_000) as f64 / 1e9
}

/// go-humanize's `ParseBytes`: digits, points and commas (dropped), then a unit
/// after optional spaces; SI units in powers of 1000, IEC in powers of 1024, any
/// case (`20MB`, `1.5 KiB`, `1,000kb`, `42`). The error is humanize's.
pub fn parse_humanize_bytes(text: &str) -> Result<u64, String> {
    let n = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))
        .unwrap_or(text.len());
    let number = text[..n].replace(',', "");
    let value = parse_float_or_go_error(&number)?;
    let unit = text[n..].trim().to_lowercase();
    let factor: f64 = match unit.as_str() {
        "" | "b" => 1.0,
        "kb" | "k" => 1e3,
        "kib" | "ki" => 1024.0,
        "mb" | "m" => 1e6,
        "mib" | "mi" => 1024.0 * 1024.0,
        "gb" | "g" => 1e9,
        "gib" | "gi" => 1024.0_f64.powi(3),
        "tb" | "t" => 1e12,
        "tib" | "ti" => 1024.0_f64.powi(4),
        "pb" | "p" => 1e15,
        "pib" | "pi" => 1024.0_f64.powi(5),
        "eb" | "e" => 1e18,
        "eib" | "ei" => 1024.0_f64.powi(6),
        _ => return Err(format!("unhandled size name: {unit}")),
    };
    let bytes = value * factor;
    if bytes >= u64::MAX as f64 {
        return Err(format!("too large: {text}"));
    }
    Ok(bytes as u64)
}

/// The `time` package's `quote`: double quotes, `"` and `\` escaped, and each byte
/// of a control or non-ASCII character as `\xNN`.
fn go_time_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c.is_ascii() && c >= ' ' {
            if c == '"' || c == '\\' {
                out.push('\\');
            }
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for byte in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("\\x{byte:02x}"));
            }
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers() {
        assert_eq!(parse_int("0x_1F"), Some(31));
        assert_eq!(parse_int("-0b11"), Some(-3));
        assert_eq!(parse_int("010"), Some(8));
        assert_eq!(parse_int("0o17"), Some(15));
        assert_eq!(parse_int("0_7"), Some(7));
        assert_eq!(parse_int("0"), Some(0));
        assert_eq!(parse_int("-9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_int("9223372036854775808"), None);
        for bad in [
            "", "-", "+-5", "1__0", "_1", "1_", "0x", "08", "0x1g", "1.0",
        ] {
            assert_eq!(parse_int(bad), None, "{bad:?}");
        }
        assert_eq!(parse_uint("18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_uint("18446744073709551616"), None);
        assert_eq!(parse_uint("+1"), None);
        // Not ASCII: not a number (and no slicing inside a character).
        assert_eq!(parse_uint("0\u{FFFD}_1"), None);
        assert_eq!(parse_int("-0\u{e9}_1"), None);
        assert_eq!(parse_uint("\u{661}"), None);
    }

    #[test]
    fn floats() {
        for (text, want) in [
            ("2100.000", 2100.0),
            ("-100", -100.0),
            ("+5", 5.0),
            ("1e2", 100.0),
            ("1E+2", 100.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1_000.5", 1000.5),
            ("0x10p0", 16.0),
            ("0x1.8p1", 3.0),
            ("0X_1P-2", 0.25),
            ("-0x1p-1", -0.5),
            ("Inf", f64::INFINITY),
            ("+Inf", f64::INFINITY),
            ("-infinity", f64::NEG_INFINITY),
        ] {
            assert_eq!(parse_float(text), Some(want), "{text}");
        }
        assert_eq!(parse_float("NaN").map(f64::to_bits), Some(GO_NAN_BITS));
        assert_eq!(
            parse_float_or_go_error("1e400").unwrap_err(),
            "strconv.ParseFloat: parsing \"1e400\": value out of range"
        );
        assert_eq!(
            parse_float_or_go_error("x").unwrap_err(),
            "strconv.ParseFloat: parsing \"x\": invalid syntax"
        );
        // Hexadecimal mantissas longer than 53 bits are rounded once, and exponents
        // far down still give subnormals, as in Go.
        assert_eq!(
            parse_float("0x1.000000000000081p0"),
            Some(1.0000000000000002)
        );
        assert_eq!(parse_float("0x1p-1074"), Some(5e-324));
        assert_eq!(parse_float("0x1000p-1030"), Some(2f64.powi(-1018)));
        assert_eq!(parse_float("0x0p2000"), Some(0.0));
        for bad in [
            "",
            "-",
            "+",
            "+-5",
            "--5",
            "1__0",
            "_1",
            "1_",
            "1_.5",
            "0x10",
            "0x1p",
            "1e",
            "1e400",
            "0x1p99999",
            "+nan",
            "fast",
            "1.2.3",
            "\u{661}",
            "0x1.8q1",
            "e5",
            ".",
        ] {
            assert_eq!(parse_float(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn durations_as_go_reads_them() {
        for (text, nanos) in [
            ("0", 0),
            ("-0", 0),
            ("+0", 0),
            ("0s", 0),
            ("5s", 5_000_000_000),
            ("+5s", 5_000_000_000),
            ("-1.5h", -5_400_000_000_000),
            ("300ms", 300_000_000),
            ("2500us", 2_500_000),
            ("2500\u{b5}s", 2_500_000),
            ("2500\u{3bc}s", 2_500_000),
            ("1h1m", 3_660_000_000_000),
            ("1s1m", 61_000_000_000),
            (".5s", 500_000_000),
            ("5.s", 5_000_000_000),
            ("1.0000000001s", 1_000_000_000),
            ("0.1234567891ms", 123_456),
            ("9223372036854775807ns", i64::MAX),
            ("-9223372036854775808ns", i64::MIN),
            ("2562047h47m16.854775807s", i64::MAX),
            ("1.00000000000000000000000000001s", 1_000_000_000),
        ] {
            assert_eq!(parse_duration(text), Ok(nanos), "{text}");
        }
        for (bad, error) in [
            ("", r#"time: invalid duration """#),
            ("-", r#"time: invalid duration "-""#),
            ("5", r#"time: missing unit in duration "5""#),
            ("00", r#"time: missing unit in duration "00""#),
            ("1d", r#"time: unknown unit "d" in duration "1d""#),
            ("5 s", r#"time: unknown unit " s" in duration "5 s""#),
            ("1..5s", r#"time: missing unit in duration "1..5s""#),
            (".s", r#"time: invalid duration ".s""#),
            ("s", r#"time: invalid duration "s""#),
            (" 5s", r#"time: invalid duration " 5s""#),
            ("1e3s", r#"time: unknown unit "e" in duration "1e3s""#),
            ("--5s", r#"time: invalid duration "--5s""#),
            (
                "9223372036854775808ns",
                r#"time: invalid duration "9223372036854775808ns""#,
            ),
            ("2562048h", r#"time: invalid duration "2562048h""#),
            (
                "5\u{e9}",
                r#"time: unknown unit "\xc3\xa9" in duration "5\xc3\xa9""#,
            ),
            ("\"5s", r#"time: invalid duration "\"5s""#),
        ] {
            assert_eq!(parse_duration(bad), Err(error.to_string()), "{bad:?}");
        }
    }
}
