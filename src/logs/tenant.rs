//! Tenants as Loki has them: the `X-Scope-OrgID` header names one (checked as
//! dskit's `tenant.ValidTenantID` checks it), no header means the single default
//! tenant (Loki's `fake`, its tenant when `auth_enabled` is off), and each tenant's
//! ingestion is limited in bytes per second with a burst (`ingestion_rate_mb`,
//! `ingestion_burst_size_mb`).

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;

/// The tenant of requests without `X-Scope-OrgID`.
pub const DEFAULT_TENANT: &str = "fake";

/// The longest tenant ID dskit accepts.
pub const MAX_TENANT_ID_LENGTH: usize = 150;

/// The tenant a request names: `None` (no header) is [`DEFAULT_TENANT`]. A push
/// names exactly one; `a|b` (several, which only queries may name) is refused.
/// Errors are dskit's messages (Loki answers them with 400).
pub fn tenant_of(header: Option<&str>) -> Result<String, String> {
    let Some(id) = header else {
        return Ok(DEFAULT_TENANT.to_string());
    };
    if id.contains('|') {
        return Err("multiple org IDs present".into());
    }
    check_tenant_id(id)?;
    Ok(id.to_string())
}

/// dskit's `ValidTenantID`: letters, digits and `!-_.*'()`, at most 150 bytes,
/// neither `.` nor `..` (a tenant names a directory and a bucket prefix).
pub fn check_tenant_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("no org id".into());
    }
    if let Some(c) = id.chars().find(|&c| {
        !(c.is_ascii_alphanumeric() || matches!(c, '!' | '-' | '_' | '.' | '*' | '\'' | '(' | ')'))
    }) {
        return Err(format!(
            "tenant ID '{id}' contains unsupported character '{c}'"
        ));
    }
    if id.len() > MAX_TENANT_ID_LENGTH {
        return Err(format!(
            "tenant ID is too long: max {MAX_TENANT_ID_LENGTH} characters"
        ));
    }
    if id == "." || id == ".." {
        return Err("tenant ID is '.' or '..'".into());
    }
    Ok(())
}

/// Loki's per-tenant ingestion rate limit: a token bucket of bytes per tenant,
/// refilled at `rate` bytes a second up to `burst` (Loki's local strategy; with one
/// distributor its global one is the same).
pub struct IngestionLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl IngestionLimiter {
    /// `rate_mb` and `burst_mb` in Loki's units (MiB: `ingestion_rate_mb` 4 and
    /// `ingestion_burst_size_mb` 6 by default).
    pub fn new(rate_mb: f64, burst_mb: f64) -> Self {
        IngestionLimiter {
            rate: rate_mb * 1024.0 * 1024.0,
            burst: burst_mb * 1024.0 * 1024.0,
            buckets: Mutex::default(),
        }
    }

    /// Takes `charged` bytes of `tenant`'s allowance at `now`, or refuses (taking
    /// nothing) with Loki's message (naming the request's `lines` and `bytes`),
    /// which it answers with 429. A request larger than the burst is always
    /// refused, as Loki's limiter refuses it.
    pub fn admit(
        &self,
        tenant: &str,
        lines: usize,
        bytes: usize,
        charged: usize,
        now: Instant,
    ) -> Result<(), String> {
        let mut buckets = self.buckets.lock();
        let bucket = buckets.entry(tenant.to_string()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.at = bucket.at.max(now);
        // The charge, but never more than the burst for a push whose bytes fit it:
        // a push Loki would take at a full bucket is taken at a full bucket here.
        let wanted = (charged as f64).min(self.burst.max(bytes as f64));
        if wanted <= bucket.tokens {
            bucket.tokens -= wanted;
            return Ok(());
        }
        Err(format!(
            "Ingestion rate limit exceeded for user {tenant} (limit: {} bytes/sec) while attempting to ingest '{lines}' lines totaling '{bytes}' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased",
            self.rate as u64
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn tenant_ids_are_checked_as_dskit_checks_them() {
        assert_eq!(tenant_of(None).unwrap(), "fake");
        assert_eq!(
            tenant_of(Some("team-a_1.(x)*'!")).unwrap(),
            "team-a_1.(x)*'!"
        );
        assert_eq!(
            tenant_of(Some("a/b")).unwrap_err(),
            "tenant ID 'a/b' contains unsupported character '/'"
        );
        assert_eq!(
            tenant_of(Some(&"a".repeat(151))).unwrap_err(),
            "tenant ID is too long: max 150 characters"
        );
        assert!(tenant_of(Some(&"a".repeat(150))).is_ok());
        assert_eq!(
            tenant_of(Some("..")).unwrap_err(),
            "tenant ID is '.' or '..'"
        );
        assert_eq!(
            tenant_of(Some("a|b")).unwrap_err(),
            "multiple org IDs present"
        );
        assert_eq!(tenant_of(Some("")).unwrap_err(), "no org id");
    }

    #[test]
    fn the_rate_limit_is_a_bucket_per_tenant_with_loki_s_message() {
        let limiter = IngestionLimiter::new(1.0, 2.0);
        let t0 = Instant::now();
        let mib = 1024 * 1024;
        // The burst at once, then nothing until it refills.
        assert!(limiter.admit("a", 1, 2 * mib, 2 * mib, t0).is_ok());
        let refused = limiter.admit("a", 3, 10, 10, t0).unwrap_err();
        assert_eq!(
            refused,
            "Ingestion rate limit exceeded for user a (limit: 1048576 bytes/sec) while attempting to ingest '3' lines totaling '10' bytes, reduce log volume or contact your Loki administrator to see if the limit can be increased"
        );
        // Another tenant has its own bucket.
        assert!(limiter.admit("b", 1, mib, mib, t0).is_ok());
        // Half a second refills half a MiB.
        let t1 = t0 + Duration::from_millis(500);
        assert!(
            limiter
                .admit("a", 1, mib / 2 - 1024, mib / 2 - 1024, t1)
                .is_ok()
        );
        assert!(limiter.admit("a", 1, 4096, 4096, t1).is_err());
        // More than the burst never passes.
        let later = t0 + Duration::from_secs(60);
        assert!(
            limiter
                .admit("a", 1, 2 * mib + 1, 2 * mib + 1, later)
                .is_err()
        );
        assert!(limiter.admit("a", 1, 2 * mib, 2 * mib, later).is_ok());
        // The charge, not the bytes, is taken: empty lines are not free.
        let limiter = IngestionLimiter::new(1.0, 2.0);
        assert!(limiter.admit("a", 20_000, 0, 1_280_000, t0).is_ok());
        let refused = limiter.admit("a", 20_000, 0, 1_280_000, t0).unwrap_err();
        assert!(
            refused.contains("'20000' lines totaling '0' bytes"),
            "{refused}"
        );
        // A charge past the burst for bytes within it takes the whole bucket, and
        // passes when the bucket is full (as Loki would take it): never refused
        // for ever.
        let limiter = IngestionLimiter::new(1.0, 2.0);
        assert!(limiter.admit("a", 120_000, 960_000, 7_680_000, t0).is_ok());
        assert!(limiter.admit("a", 1, 1, 64, t0).is_err());
        let full = t0 + Duration::from_secs(2);
        assert!(
            limiter
                .admit("a", 120_000, 960_000, 7_680_000, full)
                .is_ok()
        );
    }
}
