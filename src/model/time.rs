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

/// Parses an API timestamp as Prometheus does: Unix seconds with an optional
/// fraction, or RFC 3339. Returns milliseconds.
pub fn parse_time_ms(s: &str) -> Result<i64, String> {
    if let Ok(f) = s.parse::<f64>() {
        if !f.is_finite() {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        let ms = (f * 1000.0).round();
        if ms > i64::MAX as f64 || ms < i64::MIN as f64 {
            return Err(format!("cannot parse {s:?} to a valid timestamp"));
        }
        return Ok(ms as i64);
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|d| d.timestamp_millis())
        .map_err(|_| format!("cannot parse {s:?} to a valid timestamp"))
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
}
