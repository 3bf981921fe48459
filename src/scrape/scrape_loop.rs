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
    AppendContext, Limits, Metadata, Report, ScrapeCache, ScrapeCounts, append_report_stale,
};
use crate::scrape::client::Fetcher;
use crate::scrape::metrics::ScrapeMetrics;
use crate::scrape::relabel::RelabelConfig;
use crate::storage::{Appendable, CommitFuture};
use crate::supervise::{Supervisor, TaskMetrics};

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
    join: Option<JoinHandle<()>>,
    pub health: Arc<Mutex<TargetHealth>>,
    pub metadata: Arc<Mutex<HashMap<String, Metadata>>>,
}

impl LoopHandle {
    /// Starts the loop. A loop that panics is counted in `tasks` and started again
    /// after a back-off (its target's health says so meanwhile).
    pub fn start(spec: LoopSpec, appendable: Arc<dyn Appendable>, tasks: &TaskMetrics) -> Self {
        let cancel = CancellationToken::new();
        let stale_on_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let health = Arc::new(Mutex::new(TargetHealth::default()));
        let metadata = Arc::new(Mutex::new(HashMap::new()));
        let spec = Arc::new(spec);
        let supervisor = Supervisor::new(tasks.clone(), Arc::default(), cancel.clone());
        let (token, stale, h, m) = (
            cancel.clone(),
            stale_on_stop.clone(),
            health.clone(),
            metadata.clone(),
        );
        let join = supervisor.spawn("scrape_loop", move || {
            let run = run(
                spec.clone(),
                appendable.clone(),
                token.clone(),
                stale.clone(),
                h.clone(),
                m.clone(),
            );
            let h = h.clone();
            async move {
                // What the target page shows until the restarted loop scrapes again.
                let mut guard = PanicNote(Some(h));
                run.await;
                guard.0 = None;
                Ok(())
            }
        });
        Self {
            cancel,
            stale_on_stop,
            join: Some(join),
            health,
            metadata,
        }
    }

    /// Stops the loop; with `mark_stale`, its series get stale markers. Returns once
    /// the loop has finished (its last commit included).
    pub async fn stop(mut self, mark_stale: bool) {
        self.stale_on_stop
            .store(mark_stale, std::sync::atomic::Ordering::Release);
        self.cancel.cancel();
        if let Some(join) = self.join.take()
            && let Err(e) = join.await
        {
            tracing::error!(error = %e, "scrape loop task failed");
        }
    }
}

/// Sets the target's last error if the loop unwinds (a panic), so the targets page
/// says why it stopped while the supervisor restarts it.
struct PanicNote(Option<Arc<Mutex<TargetHealth>>>);

impl Drop for PanicNote {
    fn drop(&mut self) {
        if let Some(h) = self.0.take()
            && std::thread::panicking()
        {
            let mut h = h.lock();
            h.health = Health::Down;
            h.last_error = "scrape loop panicked; restarting it".to_string();
        }
    }
}

impl Drop for LoopHandle {
    /// A handle dropped without [`stop`](LoopHandle::stop) (its pool task panicked)
    /// still ends its loop, so a restarted pool never scrapes a target twice.
    fn drop(&mut self) {
        self.cancel.cancel();
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
    let mut aligned = AlignedTime::new(spec.interval);
    let mut last_body_len = 0usize;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = ticker.tick() => {}
        }
        let started_at = SystemTime::now();
        let started = Instant::now();
        let t_ms = aligned.scrape_time(now_ms());
        let fetched = tokio::select! {
            _ = cancel.cancelled() => break,
            r = spec.fetcher.fetch(spec.timeout, last_body_len) => r,
        };
        if let Ok((body, _)) = &fetched {
            // A little room, so that a page that grew a few series is not copied.
            last_body_len = body.len() + body.len() / 16;
        }
        let fetch_time = started.elapsed();
        let body_len = fetched.as_ref().map_or(0, |(body, _)| body.len());
        let (outcome, commit) = if body_len <= INLINE_APPEND_MAX_BYTES {
            append_scrape(
                &spec,
                appendable.as_ref(),
                &mut cache,
                fetched,
                t_ms,
                fetch_time,
            )
        } else {
            let work_spec = spec.clone();
            let app_store = appendable.clone();
            let result = tokio::task::spawn_blocking(move || {
                let appended = append_scrape(
                    &work_spec,
                    app_store.as_ref(),
                    &mut cache,
                    fetched,
                    t_ms,
                    fetch_time,
                );
                (cache, appended)
            })
            .await;
            match result {
                Ok((c, appended)) => {
                    cache = c;
                    appended
                }
                Err(e) => {
                    tracing::error!(error = %e, "scrape append task failed");
                    return;
                }
            }
        };
        // The commit is awaited here, so no thread is held while the log gathers
        // company for its sync.
        let outcome = match commit.await {
            Ok(_) => outcome,
            Err(e) => {
                tracing::warn!(error = %e, "scrape commit failed");
                Err(format!("commit: {e}"))
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

/// The largest body appended on the runtime's worker thread rather than on the
/// blocking pool. A node_exporter page (~100 KB) takes about half a millisecond to
/// parse and append, and handing it to a pool thread and back costs two thread
/// wake-ups a scrape on top; a larger page would hold the worker, and every task
/// queued behind it, too long (≈2 ms at this size).
const INLINE_APPEND_MAX_BYTES: usize = 256 << 10;

/// How far a scrape may start from its place on the interval grid and still be
/// stamped with that place (Prometheus's `ScrapeTimestampTolerance`).
const TIMESTAMP_TOLERANCE_MS: i64 = 2;

/// Scrape timestamps as Prometheus 2.42 takes them: a scrape that starts within
/// [`TIMESTAMP_TOLERANCE_MS`] after its place on the grid of the first scrape and the
/// interval gets exactly that place. Timer jitter otherwise makes every timestamp's
/// delta-of-delta non-zero, which costs chunk and WAL bytes for nothing.
struct AlignedTime {
    interval_ms: i64,
    /// The grid point of the last scrape (`None` before the first).
    grid: Option<i64>,
}

impl AlignedTime {
    fn new(interval: Duration) -> Self {
        Self {
            interval_ms: i64::try_from(interval.as_millis()).unwrap_or(i64::MAX),
            grid: None,
        }
    }

    /// The timestamp of a scrape starting at `now_ms`.
    fn scrape_time(&mut self, now_ms: i64) -> i64 {
        // As Prometheus: only intervals well above the tolerance are aligned.
        if self.interval_ms <= 100 * TIMESTAMP_TOLERANCE_MS {
            return now_ms;
        }
        let grid = self.grid.get_or_insert(now_ms);
        // A wall clock set back starts a new grid (on the old one every timestamp
        // would be the same grid point until the clock caught up).
        if now_ms < *grid {
            *grid = now_ms;
        }
        // Skipped ticks move the grid point on by whole intervals.
        if now_ms - *grid >= self.interval_ms {
            *grid += (now_ms - *grid) / self.interval_ms * self.interval_ms;
        }
        if now_ms - *grid <= TIMESTAMP_TOLERANCE_MS {
            *grid
        } else {
            now_ms
        }
    }
}

/// Appends one scrape's outcome: its samples (or, on failure, stale markers) and the
/// report series, in one commit, which is returned in flight. The error is the
/// target's `lastError` (unless the commit fails).
fn append_scrape(
    spec: &LoopSpec,
    appendable: &dyn Appendable,
    cache: &mut ScrapeCache,
    fetched: Result<(Vec<u8>, crate::exposition::format::Format), String>,
    t_ms: i64,
    fetch_time: Duration,
) -> (Result<ScrapeCounts, String>, CommitFuture) {
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
    cache.append_report(
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
    let commit = app.commit_patient_async(cache.commit_memo());
    (outcome, commit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrape_times_within_the_tolerance_snap_to_the_grid() {
        let mut a = AlignedTime::new(Duration::from_secs(15));
        assert_eq!(a.scrape_time(1_000_003), 1_000_003);
        // Late by up to 2 ms: on the grid; later: as measured.
        assert_eq!(a.scrape_time(1_015_005), 1_015_003);
        assert_eq!(a.scrape_time(1_030_003), 1_030_003);
        assert_eq!(a.scrape_time(1_045_006), 1_045_006);
        // Early: as measured (Prometheus aligns only late starts).
        assert_eq!(a.scrape_time(1_059_999), 1_059_999);
        // Two skipped ticks: the grid moves on by whole intervals.
        assert_eq!(a.scrape_time(1_105_004), 1_105_003);
        // The clock set back: a new grid from there.
        assert_eq!(a.scrape_time(1_000_001), 1_000_001);
        assert_eq!(a.scrape_time(1_015_002), 1_000_001 + 15_000);
        // Short intervals are never aligned.
        let mut b = AlignedTime::new(Duration::from_millis(100));
        b.scrape_time(1_000);
        assert_eq!(b.scrape_time(1_101), 1_101);
    }

    #[test]
    fn first_delay_is_within_the_interval_and_follows_the_hash() {
        let interval = Duration::from_secs(15);
        for hash in [0u64, 1, 7_000_000_000, u64::MAX] {
            assert!(first_delay(hash, interval) < interval);
        }
    }
}
