//! One target's scrape loop: fetch on the interval (offset by the target's hash so
//! targets spread over the interval), append through the storage seam, report the
//! synthetic series, and leave stale markers when the target goes away.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::model::{Labels, now_ms};
use crate::scrape::append::{
    AppendContext, Limits, Metadata, Report, ScrapeCache, ScrapeCounts, append_report,
    append_report_stale,
};
use crate::scrape::client::Fetcher;
use crate::scrape::metrics::ScrapeMetrics;
use crate::scrape::relabel::RelabelConfig;
use crate::storage::Appendable;

/// What a loop needs to know about its target and job.
pub struct LoopSpec {
    /// Labels attached to every sample (`job`, `instance`, …).
    pub public_labels: Labels,
    pub fetcher: Fetcher,
    pub interval: Duration,
    pub timeout: Duration,
    pub honor_labels: bool,
    pub honor_timestamps: bool,
    pub metric_relabel: Arc<Vec<RelabelConfig>>,
    pub limits: Limits,
    /// Spreads targets over the interval.
    pub hash: u64,
    pub job: String,
    pub metrics: ScrapeMetrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Up,
    Down,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Up => "up",
            Health::Down => "down",
        }
    }
}

/// What `/api/v1/targets` shows of a loop.
#[derive(Debug, Clone)]
pub struct TargetHealth {
    pub health: Health,
    pub last_error: String,
    pub last_scrape: Option<SystemTime>,
    pub last_scrape_duration: Duration,
}

impl Default for TargetHealth {
    fn default() -> Self {
        Self {
            health: Health::Unknown,
            last_error: String::new(),
            last_scrape: None,
            last_scrape_duration: Duration::ZERO,
        }
    }
}

/// A running loop.
pub struct LoopHandle {
    cancel: CancellationToken,
    /// Whether stopping writes stale markers (a target that went away) or not (a
    /// reload that restarts the loop, or shutdown).
    stale_on_stop: Arc<std::sync::atomic::AtomicBool>,
    join: JoinHandle<()>,
    pub health: Arc<Mutex<TargetHealth>>,
    pub metadata: Arc<Mutex<HashMap<String, Metadata>>>,
}

impl LoopHandle {
    pub fn start(spec: LoopSpec, appendable: Arc<dyn Appendable>) -> Self {
        let cancel = CancellationToken::new();
        let stale_on_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let health = Arc::new(Mutex::new(TargetHealth::default()));
        let metadata = Arc::new(Mutex::new(HashMap::new()));
        let join = tokio::spawn(run(
            Arc::new(spec),
            appendable,
            cancel.clone(),
            stale_on_stop.clone(),
            health.clone(),
            metadata.clone(),
        ));
        Self {
            cancel,
            stale_on_stop,
            join,
            health,
            metadata,
        }
    }

    /// Stops the loop; with `mark_stale`, its series get stale markers. Returns once
    /// the loop has finished (its last commit included).
    pub async fn stop(self, mark_stale: bool) {
        self.stale_on_stop
            .store(mark_stale, std::sync::atomic::Ordering::Release);
        self.cancel.cancel();
        if let Err(e) = self.join.await {
            tracing::error!(error = %e, "scrape loop task failed");
        }
    }
}

/// The delay before a target's first scrape: its place in the interval, derived from
/// its hash, so targets of a job scrape at stable, spread-out moments.
fn first_delay(hash: u64, interval: Duration) -> Duration {
    let interval_ns = interval.as_nanos().max(1) as u64;
    let now_ns = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let offset = hash % interval_ns;
    let into_interval = now_ns % interval_ns;
    Duration::from_nanos((offset + interval_ns - into_interval) % interval_ns)
}

async fn run(
    spec: Arc<LoopSpec>,
    appendable: Arc<dyn Appendable>,
    cancel: CancellationToken,
    stale_on_stop: Arc<std::sync::atomic::AtomicBool>,
    health: Arc<Mutex<TargetHealth>>,
    metadata: Arc<Mutex<HashMap<String, Metadata>>>,
) {
    let mut cache = ScrapeCache::default();
    let mut metadata_version = 0;
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = tokio::time::sleep(first_delay(spec.hash, spec.interval)) => {}
    }
    let mut ticker = tokio::time::interval(spec.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let started_at = SystemTime::now();
        let started = Instant::now();
        let t_ms = now_ms();
        let fetched = tokio::select! {
            _ = cancel.cancelled() => break,
            r = spec.fetcher.fetch(spec.timeout) => r,
        };
        let fetch_time = started.elapsed();
        let work_spec = spec.clone();
        let app_store = appendable.clone();
        let result = tokio::task::spawn_blocking(move || {
            let outcome = append_scrape(
                &work_spec,
                app_store.as_ref(),
                &mut cache,
                fetched,
                t_ms,
                fetch_time,
            );
            (cache, outcome)
        })
        .await;
        let outcome = match result {
            Ok((c, outcome)) => {
                cache = c;
                outcome
            }
            Err(e) => {
                tracing::error!(error = %e, "scrape append task failed");
                return;
            }
        };
        spec.metrics.scraped(
            &spec.job,
            outcome.is_ok(),
            outcome.as_ref().map_or(0, |c| c.post_relabel),
        );
        {
            let mut h = health.lock();
            h.last_scrape = Some(started_at);
            h.last_scrape_duration = fetch_time;
            match &outcome {
                Ok(_) => {
                    h.health = Health::Up;
                    h.last_error.clear();
                }
                Err(e) => {
                    h.health = Health::Down;
                    h.last_error = e.clone();
                }
            }
        }
        if outcome.is_ok() && cache.metadata_version() != metadata_version {
            metadata_version = cache.metadata_version();
            *metadata.lock() = cache.metadata().clone();
        }
    }
    if stale_on_stop.load(std::sync::atomic::Ordering::Acquire) {
        let labels = spec.public_labels.clone();
        let done = tokio::task::spawn_blocking(move || {
            let t = now_ms();
            let mut app = appendable.appender();
            cache.append_failure(t, app.as_mut());
            append_report_stale(&labels, t, app.as_mut());
            app.commit()
        })
        .await;
        match done {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot write stale markers"),
            Err(e) => tracing::error!(error = %e, "stale marker task failed"),
        }
    }
}

/// Appends one scrape's outcome: its samples (or, on failure, stale markers) and the
/// report series, in one commit. The error is the target's `lastError`.
fn append_scrape(
    spec: &LoopSpec,
    appendable: &dyn Appendable,
    cache: &mut ScrapeCache,
    fetched: Result<(Vec<u8>, crate::exposition::format::Format), String>,
    t_ms: i64,
    fetch_time: Duration,
) -> Result<ScrapeCounts, String> {
    let ctx = AppendContext {
        target_labels: &spec.public_labels,
        honor_labels: spec.honor_labels,
        honor_timestamps: spec.honor_timestamps,
        metric_relabel: &spec.metric_relabel,
        limits: spec.limits,
    };
    let mut app = appendable.appender();
    let outcome = match fetched {
        Ok((body, format)) => match cache.append_body(&ctx, format, &body, t_ms, app.as_mut()) {
            Ok(counts) => Ok(counts),
            Err(e) => {
                app.rollback();
                app = appendable.appender();
                Err(e.to_string())
            }
        },
        Err(e) => Err(e),
    };
    let counts = match &outcome {
        Ok(c) => *c,
        Err(_) => {
            cache.append_failure(t_ms, app.as_mut());
            ScrapeCounts::default()
        }
    };
    append_report(
        &spec.public_labels,
        &Report {
            up: outcome.is_ok(),
            duration_seconds: fetch_time.as_secs_f64(),
            counts,
        },
        t_ms,
        app.as_mut(),
    );
    // Nobody waits on a scrape: its commit may share a log sync with others'.
    if let Err(e) = app.commit_patient() {
        tracing::warn!(error = %e, "scrape commit failed");
        return Err(format!("commit: {e}"));
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_delay_is_within_the_interval_and_follows_the_hash() {
        let interval = Duration::from_secs(15);
        for hash in [0u64, 1, 7_000_000_000, u64::MAX] {
            assert!(first_delay(hash, interval) < interval);
        }
    }
}
