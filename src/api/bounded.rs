//! The one way a query path runs: every request that reads series — `/query`,
//! `/query_range`, `/format_query`, `/query_exemplars`, `/series`, `/labels`,
//! `/label/<name>/values`, `/federate` and `/api/v1/read` — takes one of the
//! `--query.max-concurrency` permits (waiting for it counts against its timeout, as
//! Prometheus's query queue does), runs off the async scheduler under
//! `--query.timeout` (or the request's shorter `timeout`), and is cancelled when its
//! client goes away.
//!
//! The work itself checks [`RequestLimits`] between series and steps, so it stops
//! soon after the deadline or the cancellation. The caller does not wait for that:
//! it answers `timeout` at the deadline even if the work is inside a call that cannot
//! be interrupted; the permit stays with the work until it has in fact stopped, so
//! work cut off this way still counts against the concurrency limit.

use std::time::{Duration, Instant};

use super::response::{ApiError, ErrorType};
use crate::promql::{CancelFlag, CancelOnDrop, QueryError};

/// What every query path shares: the engine (its timeout and sample limit), the
/// `--query.max-concurrency` permits, the query metrics, and the shutdown that
/// answers waiting requests at once.
#[derive(Clone)]
pub struct QueryGate {
    pub engine: std::sync::Arc<crate::promql::Engine>,
    pub permits: std::sync::Arc<tokio::sync::Semaphore>,
    pub metrics: super::QueryMetrics,
    pub shutdown: tokio_util::sync::CancellationToken,
}

/// What a query path's work must stay within: checked by the work itself.
#[derive(Debug, Clone)]
pub struct RequestLimits {
    /// Set when the client went away or the caller stopped waiting.
    pub cancel: CancelFlag,
    pub deadline: Instant,
    /// `--query.max-samples`: series and samples a request may hold at once.
    pub max_samples: usize,
}

impl RequestLimits {
    /// Fails once the request is canceled or past its deadline; `stage` names where,
    /// as Prometheus's "query timed out in …".
    pub fn check(&self, stage: &'static str) -> Result<(), QueryError> {
        if self.cancel.is_canceled() {
            return Err(QueryError::Canceled(stage));
        }
        if Instant::now() > self.deadline {
            return Err(QueryError::Timeout(stage));
        }
        Ok(())
    }

    /// Fails when `held` series or samples are more than `--query.max-samples`.
    pub fn hold(&self, held: usize) -> Result<(), QueryError> {
        if held > self.max_samples {
            return Err(QueryError::too_many_samples());
        }
        Ok(())
    }

    /// Time left before the deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// The timeout of a request: `--query.timeout`, or the request's `timeout`
/// parameter (ms) where it is shorter and positive, as Prometheus.
pub fn request_timeout(s: &QueryGate, timeout_ms: Option<i64>) -> Duration {
    let limit = s.engine.options().timeout;
    match timeout_ms {
        Some(ms) if ms > 0 => limit.min(Duration::from_millis(ms.unsigned_abs())),
        _ => limit,
    }
}

/// Waits for one of the `--query.max-concurrency` permits until `deadline`.
pub async fn acquire_permit(
    s: &QueryGate,
    deadline: Instant,
) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    let acquire = s.permits.clone().acquire_owned();
    let waited = tokio::select! {
        w = tokio::time::timeout_at(deadline.into(), acquire) => w,
        _ = s.shutdown.cancelled() => return Err(ApiError::unavailable("shutting down")),
    };
    match waited {
        Ok(Ok(permit)) => Ok(permit),
        Ok(Err(_)) => Err(ApiError::unavailable("shutting down")),
        Err(_) => Err(QueryError::Timeout("query queue").into()),
    }
}

/// Runs `work` as a query path (see the module's comment): under a permit, off the
/// async scheduler, within the request's timeout. `query` is the PromQL text the work
/// parses, if any: a query that is not shallow gets a thread with a deep enough stack
/// (see [`crate::promql::SHALLOW_NESTING`]); the permit bounds how many such threads
/// exist.
pub async fn run_bounded<T, F>(
    s: &QueryGate,
    timeout_ms: Option<i64>,
    query: Option<&str>,
    work: F,
) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&RequestLimits) -> Result<T, ApiError> + Send + 'static,
{
    let deadline = Instant::now() + request_timeout(s, timeout_ms);
    let permit = acquire_permit(s, deadline).await?;
    let limits = RequestLimits {
        cancel: CancelFlag::default(),
        deadline,
        max_samples: s.engine.options().max_samples,
    };
    // Dropped when this future is (the client went away) or when it stops waiting.
    let _cancel = CancelOnDrop(limits.cancel.clone());
    let metrics = s.metrics.clone();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job = move || {
        let _permit = permit;
        let _evaluating = metrics.evaluating();
        let _ = tx.send(work(&limits));
    };
    if query.is_none_or(crate::promql::is_shallow) {
        // tokio's blocking threads are kept between calls; starting a thread with a
        // large stack for every query cost about 0.1 ms, more than a one-series
        // query takes.
        drop(tokio::task::spawn_blocking(job));
    } else {
        std::thread::Builder::new()
            .name("odin-query".into())
            .stack_size(crate::promql::QUERY_STACK_BYTES)
            .spawn(job)
            .map_err(|e| ApiError::new(ErrorType::Internal, e.to_string()))?;
    }
    // The work checks the same deadline and answers `timeout` itself; this bound
    // answers for it when it is inside a call that cannot be interrupted.
    let backstop = deadline + Duration::from_millis(100);
    // On shutdown the request is answered at once and its work canceled, so SIGTERM
    // never waits for a long query.
    let answer = tokio::select! {
        a = tokio::time::timeout_at(backstop.into(), rx) => a,
        _ = s.shutdown.cancelled() => return Err(ApiError::unavailable("shutting down")),
    };
    match answer {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(ApiError::new(
            ErrorType::Internal,
            "the request's evaluation stopped without an answer",
        )),
        Err(_) => Err(QueryError::Timeout("query execution").into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_stop_on_cancel_deadline_and_samples() {
        let l = RequestLimits {
            cancel: CancelFlag::default(),
            deadline: Instant::now() + Duration::from_secs(60),
            max_samples: 10,
        };
        assert!(l.check("x").is_ok());
        assert!(l.hold(10).is_ok());
        assert!(matches!(l.hold(11), Err(QueryError::Execution(_))));
        l.cancel.cancel();
        assert!(matches!(l.check("x"), Err(QueryError::Canceled("x"))));
        let late = RequestLimits {
            deadline: Instant::now() - Duration::from_millis(1),
            cancel: CancelFlag::default(),
            ..l
        };
        assert!(matches!(late.check("y"), Err(QueryError::Timeout("y"))));
    }
}
