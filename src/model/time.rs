//! Prometheus's textual forms of durations, byte sizes and timestamps.

/// Parses a Prometheus duration (`1y2w3d4h5m6s7ms`, units in that order, each at most
/// once) into milliseconds. `0` alone is accepted.
pub fn parse_duration_ms(s: &str) -> Result<i64, String> {
    if s == "0" {
        return Ok(0);
    }
    const UNITS: [(&str, i64); 7] = [
        ("y", 365 * 24 * 3_600_000),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ];
    if s.is_empty() {
        return Err("empty duration string".into());
    }
    let mut rest = s;
    let mut total: i64 = 0;
    let mut last_unit = None::<usize>;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!("not a valid duration string: {s:?}"));
        }
        let n: i64 = rest[..digits]
            .parse()
            .map_err(|_| format!("not a valid duration string: {s:?}"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(|b| b.is_ascii_alphabetic()).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let Some(idx) = UNITS.iter().position(|(u, _)| *u == unit) else {
            return Err(format!("not a valid duration string: {s:?}"));
        };
        if last_unit.is_some_and(|l| idx <= l) {
            return Err(format!("not a valid duration string: {s:?}"));
        }
        last_unit = Some(idx);
        total = n
            .checked_mul(UNITS[idx].1)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("duration out of range: {s:?}"))?;
    }
    Ok(total)
}

/// Formats milliseconds as Prometheus prints durations (`1d2h`, `0s`).
pub fn format_duration_ms(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = ms;
    for (unit, size) in [
        ("y", 365 * 24 * 3_600_000i64),
        ("w", 7 * 24 * 3_600_000),
        ("d", 24 * 3_600_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// Parses a byte size as Prometheus's `--storage.tsdb.retention.size` (`512MB`,
/// `1GB`; base 2, so 1KB = 1024 bytes).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    let n: u64 = s[..digits]
        .parse()
        .map_err(|_| format!("invalid byte size {s:?}"))?;
    let mult: u64 = match s[digits..].to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "KB" | "KIB" => 1 << 10,
        "MB" | "MIB" => 1 << 20,
        "GB" | "GIB" => 1 << 30,
        "TB" | "TIB" => 1 << 40,
        "PB" | "PIB" => 1 << 50,
        "EB" | "EIB" => 1 << 60,
        _ => return Err(format!("invalid byte size {s:?}: unknown unit")),
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("byte size out of range: {s:?}"))
}

/// The earliest timestamp the API accepts, in ms: Prometheus's `minTime`,
/// `time.Unix(math.MinInt64/1000+62135596801, 0)` (year -292273086). It is also the
/// default `start` of `/api/v1/series` and `/labels`.
pub const MIN_TIME_MS: i64 = (i64::MIN / 1000 + 62_135_596_801) * 1000;

/// The latest timestamp the API accepts, in ms: Prometheus's `maxTime`,
/// `time.Unix(math.MaxInt64/1000-62135596801, 999999999)` (year 292277025).
pub const MAX_TIME_MS: i64 = (i64::MAX / 1000 - 62_135_596_801) * 1000 + 999;

/// `minTime` and `maxTime` as Prometheus formats them (RFC 3339 cannot write their
/// years, so Prometheus accepts these two strings by name).
const MIN_TIME_FORMATTED: &str = "-292273086-05-16T16:47:06Z";
const MAX_TIME_FORMATTED: &str = "292277025-08-18T07:12:54.999999999Z";

/// The longest duration the API accepts, in ms: Prometheus parses durations into
/// Go's `time.Duration`, nanoseconds in an int64 (about 292 years).
pub const MAX_DURATION_MS: i64 = i64::MAX / 1_000_000;

/// Parses an API timestamp as Prometheus does: Unix seconds with an optional
/// fraction, or RFC 3339. Returns milliseconds.
///
/// Times outside [`MIN_TIME_MS`]..=[`MAX_TIME_MS`] are refused ("cannot parse … to a
/// valid timestamp"): a time between them plus or minus any duration the API
/// accepts ([`MAX_DURATION_MS`]) fits in an `i64`. (The difference of two times may
/// not: `end - start` is computed checked.)
pub fn parse_time_ms(s: &str) -> Result<i64, String> {
    let invalid = || format!("cannot parse {s:?} to a valid timestamp");
    let ms = if let Ok(f) = s.parse::<f64>() {
        // Whole seconds and the fraction apart, as Prometheus (`math.Modf`): `f *
        // 1000` would lose the milliseconds of large times.
        let secs = f.trunc();
        // NaN fails both comparisons.
        if !(secs >= (MIN_TIME_MS / 1000) as f64 && secs <= (MAX_TIME_MS / 1000) as f64) {
            return Err(invalid());
        }
        // Within the bounds: no overflow.
        (secs as i64) * 1000 + ((f - secs) * 1000.0).round() as i64
    } else if s == MIN_TIME_FORMATTED {
        MIN_TIME_MS
    } else if s == MAX_TIME_FORMATTED {
        MAX_TIME_MS
    } else {
        chrono::DateTime::parse_from_rfc3339(s)
            .map(|d| d.timestamp_millis())
            .map_err(|_| invalid())?
    };
    if !(MIN_TIME_MS..=MAX_TIME_MS).contains(&ms) {
        return Err(invalid());
    }
    Ok(ms)
}

/// Parses an API duration as Prometheus does: float seconds, or a Prometheus
/// duration (`5m`). Returns milliseconds; a duration whose nanoseconds overflow an
/// int64 (more than [`MAX_DURATION_MS`]) is refused with Prometheus's words.
pub fn parse_api_duration_ms(s: &str) -> Result<i64, String> {
    if let Ok(secs) = s.parse::<f64>() {
        let ns = secs * 1e9;
        // NaN fails both comparisons.
        if !(ns < i64::MAX as f64 && ns > i64::MIN as f64) {
            return Err(format!(
                "cannot parse {s:?} to a valid duration. It overflows int64"
            ));
        }
        return Ok((secs * 1000.0).round() as i64);
    }
    match parse_duration_ms(s) {
        Ok(ms) if ms <= MAX_DURATION_MS => Ok(ms),
        _ => Err(format!("cannot parse {s:?} to a valid duration")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("7d").unwrap(), 7 * 86_400_000);
        assert_eq!(parse_duration_ms("1h30m").unwrap(), 5_400_000);
        assert_eq!(parse_duration_ms("250ms").unwrap(), 250);
        assert!(parse_duration_ms("30m1h").is_err());
        assert!(parse_duration_ms("1x").is_err());
        assert!(parse_duration_ms("").is_err());
        assert_eq!(format_duration_ms(5_400_000), "1h30m");
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("512MB").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1GB").unwrap(), 1 << 30);
        assert!(parse_bytes("12XB").is_err());
    }

    #[test]
    fn timestamps() {
        assert_eq!(parse_time_ms("1.5").unwrap(), 1500);
        assert_eq!(parse_time_ms("1970-01-01T00:00:02Z").unwrap(), 2000);
        assert!(parse_time_ms("yesterday").is_err());
    }

    /// Issue 14: `end=9223372036854775.807` (i64::MAX ms) was taken as a time, and
    /// step arithmetic on it wrapped. Prometheus's bounds refuse it, and anything else
    /// outside `minTime`..`maxTime`; the bounds themselves parse, by number and by name.
    #[test]
    fn timestamps_outside_prometheus_bounds_are_refused() {
        for s in [
            "9223372036854775.807",
            "-9223372036854775.808",
            "9223309901257975",
            "-9223309901257975",
            "1e300",
            "-1e300",
            "NaN",
            "Inf",
            "-Inf",
        ] {
            let err = parse_time_ms(s).unwrap_err();
            assert_eq!(err, format!("cannot parse {s:?} to a valid timestamp"));
        }
        // f64 holds these to 2 s.
        assert_eq!(
            parse_time_ms("9223309901257974").unwrap(),
            MAX_TIME_MS - 999
        );
        assert_eq!(parse_time_ms("-9223309901257974").unwrap(), MIN_TIME_MS);
        assert_eq!(parse_time_ms("1435781451.781").unwrap(), 1_435_781_451_781);
        assert_eq!(parse_time_ms("-1.5").unwrap(), -1500);
        assert!(parse_time_ms("292277026-01-01T00:00:00Z").is_err());
        assert_eq!(parse_time_ms(MIN_TIME_FORMATTED).unwrap(), MIN_TIME_MS);
        assert_eq!(parse_time_ms(MAX_TIME_FORMATTED).unwrap(), MAX_TIME_MS);
        // A time plus any accepted duration fits; the span of two times may not.
        assert!(MAX_TIME_MS.checked_sub(MIN_TIME_MS).is_none());
        assert!(MAX_TIME_MS.checked_add(MAX_DURATION_MS).is_some());
        assert!(MIN_TIME_MS.checked_sub(MAX_DURATION_MS).is_some());
    }

    /// Issue 14: `step=1e15` (seconds) was taken; Prometheus refuses a duration whose
    /// nanoseconds overflow an int64, as float seconds and as a duration string.
    #[test]
    fn api_durations_have_prometheus_bounds() {
        assert_eq!(parse_api_duration_ms("1.5").unwrap(), 1500);
        assert_eq!(parse_api_duration_ms("5m").unwrap(), 300_000);
        assert_eq!(
            parse_api_duration_ms("9223372036").unwrap(),
            9_223_372_036_000
        );
        for s in [
            "1e15",
            "1152921504606846.976",
            "-1e15",
            "9223372037",
            "NaN",
            "Inf",
        ] {
            let err = parse_api_duration_ms(s).unwrap_err();
            assert!(err.ends_with("It overflows int64"), "{s}: {err}");
        }
        for s in ["300y", "1000000000y", "9223372036854775807ms"] {
            let err = parse_api_duration_ms(s).unwrap_err();
            assert_eq!(err, format!("cannot parse {s:?} to a valid duration"));
        }
    }
}
