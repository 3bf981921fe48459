//! Supervision of long-lived tasks: none may end silently.
//!
//! A task started through [`Supervisor`] that panics, returns an error, or returns at
//! all while the appliance is not shutting down is logged at error level, counted in
//! `odin_task_failures_total{task}`, marked down in [`TaskHealth`] (which `/-/ready`
//! reports), and started again after an exponential back-off. A task the appliance
//! cannot run without is started with [`Supervisor::spawn_critical`]: its failure
//! shuts the appliance down and the process exits non-zero, since a service that
//! answers health checks but cannot serve is worse than one that is restarted.
//!
//! Threads that are not tokio tasks (maintenance) use [`run_guarded`] for each
//! round of their work: a round that panics is counted in the same metric and the
//! next round runs as usual, so the task is never down.
//!
//! `/-/ready` reflects the appliance's own tasks (shipper, bucket sync, reload). A
//! scrape loop or pool that fails is counted and restarted the same way, but it is
//! one target's or one job's problem: it shows as that target's `lastError` on the
//! targets page, not as the whole appliance being unready.
//!
//! This module depends on nothing else of ODIN.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabel {
    task: String,
}

/// `odin_task_failures_total{task}`.
#[derive(Clone, Default)]
pub struct TaskMetrics {
    failures: Family<TaskLabel, Counter>,
}

impl TaskMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "odin_task_failures",
            "Long-lived tasks that panicked, failed or ended unexpectedly (each is restarted or stops the process)",
            m.failures.clone(),
        );
        m
    }

    /// Counts one failure of `task`.
    pub fn failed(&self, task: &str) {
        self.failures
            .get_or_create(&TaskLabel {
                task: task.to_string(),
            })
            .inc();
    }

    /// Failures counted for `task` so far.
    pub fn failures(&self, task: &str) -> u64 {
        self.failures
            .get_or_create(&TaskLabel {
                task: task.to_string(),
            })
            .get()
    }
}

/// Which supervised tasks are down right now, and why. `/-/ready` answers 503 while
/// any is.
#[derive(Default)]
pub struct TaskHealth {
    down: Mutex<BTreeMap<String, String>>,
}

impl TaskHealth {
    pub fn mark_down(&self, task: &str, reason: &str) {
        self.down
            .lock()
            .insert(task.to_string(), reason.to_string());
    }

    pub fn mark_up(&self, task: &str) {
        self.down.lock().remove(task);
    }

    /// The tasks that are down, with their reasons, sorted by name.
    pub fn down(&self) -> Vec<(String, String)> {
        self.down
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

/// How a supervised task is restarted.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// The wait after the first failure, doubled after each further one …
    pub min: Duration,
    /// … up to this.
    pub max: Duration,
    /// A task that ran this long before failing starts again from `min`.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            min: Duration::from_secs(1),
            max: Duration::from_secs(60),
            reset_after: Duration::from_secs(300),
        }
    }
}

/// Starts and watches long-lived tasks; cheap to clone.
#[derive(Clone)]
pub struct Supervisor {
    metrics: TaskMetrics,
    health: Arc<TaskHealth>,
    shutdown: CancellationToken,
    backoff: Backoff,
    /// Why a critical task stopped the appliance, if one did.
    fatal: Arc<Mutex<Option<String>>>,
}

impl Supervisor {
    pub fn new(metrics: TaskMetrics, health: Arc<TaskHealth>, shutdown: CancellationToken) -> Self {
        Self {
            metrics,
            health,
            shutdown,
            backoff: Backoff::default(),
            fatal: Arc::new(Mutex::new(None)),
        }
    }

    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Cancelled when the appliance shuts down.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    pub fn metrics(&self) -> &TaskMetrics {
        &self.metrics
    }

    pub fn health(&self) -> &Arc<TaskHealth> {
        &self.health
    }

    /// Why a critical task stopped the appliance; `None` after a normal shutdown.
    pub fn fatal_error(&self) -> Option<String> {
        self.fatal.lock().clone()
    }

    /// Runs the task that `start` makes until shutdown, starting a new one after
    /// each failure. A task should return only once `shutdown` is cancelled;
    /// returning earlier, with or without an error, counts as a failure.
    pub fn spawn<F, Fut>(&self, task: &'static str, start: F) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let this = self.clone();
        tokio::spawn(async move { this.watch(task, start, false).await })
    }

    /// As [`spawn`](Self::spawn), but the first failure shuts the appliance down
    /// and is reported by [`fatal_error`](Self::fatal_error).
    pub fn spawn_critical<F, Fut>(
        &self,
        task: &'static str,
        start: F,
    ) -> tokio::task::JoinHandle<()>
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let this = self.clone();
        tokio::spawn(async move { this.watch(task, start, true).await })
    }

    async fn watch<F, Fut>(&self, task: &'static str, mut start: F, critical: bool)
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let mut wait = self.backoff.min;
        loop {
            let started = Instant::now();
            let outcome = tokio::spawn(start()).await;
            if self.shutdown.is_cancelled() {
                if let Ok(Err(e)) | Err(e) = outcome.map_err(|e| panic_text(&e)) {
                    tracing::warn!(task, error = %e, "task ended with an error during shutdown");
                }
                return;
            }
            let reason = match outcome {
                Ok(Ok(())) => "ended unexpectedly".to_string(),
                Ok(Err(e)) => e,
                Err(join) => panic_text(&join),
            };
            self.metrics.failed(task);
            if critical {
                tracing::error!(task, error = %reason, "critical task failed; shutting down");
                self.fatal
                    .lock()
                    .get_or_insert_with(|| format!("{task}: {reason}"));
                self.health.mark_down(task, &reason);
                self.shutdown.cancel();
                return;
            }
            if started.elapsed() >= self.backoff.reset_after {
                wait = self.backoff.min;
            }
            tracing::error!(task, error = %reason, restart_in_ms = wait.as_millis() as u64,
                "task failed; restarting it");
            self.health.mark_down(task, &reason);
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = self.shutdown.cancelled() => return,
            }
            wait = (wait * 2).min(self.backoff.max);
            self.health.mark_up(task);
        }
    }
}

/// Runs one round of a thread's work, turning a panic into a logged, counted
/// failure. Returns whether the round completed.
pub fn run_guarded(task: &str, metrics: &TaskMetrics, round: impl FnOnce()) -> bool {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(round)) {
        Ok(()) => true,
        Err(payload) => {
            let reason = payload_text(payload.as_ref());
            metrics.failed(task);
            tracing::error!(task, error = %reason, "task panicked; it goes on with its next round");
            false
        }
    }
}

fn panic_text(e: &tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "task was cancelled".to_string();
    }
    format!("task failed: {e}")
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_string()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn fast() -> Backoff {
        Backoff {
            min: Duration::from_millis(5),
            max: Duration::from_millis(20),
            reset_after: Duration::from_secs(60),
        }
    }

    async fn wait_until(mut cond: impl FnMut() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(5);
        while !cond() {
            assert!(Instant::now() < deadline, "condition not reached in 5 s");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[tokio::test]
    async fn a_panicking_task_is_counted_and_restarted() {
        let shutdown = CancellationToken::new();
        let sup = Supervisor::new(TaskMetrics::default(), Arc::default(), shutdown.clone())
            .with_backoff(fast());
        let starts = Arc::new(AtomicU32::new(0));
        let counted = starts.clone();
        let stop = shutdown.clone();
        let handle = sup.spawn("flaky", move || {
            let n = counted.fetch_add(1, Ordering::SeqCst);
            let stop = stop.clone();
            async move {
                if n < 2 {
                    panic!("boom {n}");
                }
                stop.cancelled().await;
                Ok(())
            }
        });
        wait_until(|| starts.load(Ordering::SeqCst) >= 3).await;
        assert_eq!(sup.metrics().failures("flaky"), 2);
        wait_until(|| sup.health().down().is_empty()).await;
        shutdown.cancel();
        handle.await.unwrap();
        assert_eq!(sup.metrics().failures("flaky"), 2);
        assert!(sup.fatal_error().is_none());
    }

    #[tokio::test]
    async fn an_error_or_an_early_return_is_a_failure_and_marks_the_task_down() {
        let shutdown = CancellationToken::new();
        let sup = Supervisor::new(TaskMetrics::default(), Arc::default(), shutdown.clone())
            .with_backoff(Backoff {
                min: Duration::from_secs(30),
                ..fast()
            });
        let _h = sup.spawn("returns", || async { Err("bucket said 403".to_string()) });
        wait_until(|| !sup.health().down().is_empty()).await;
        assert_eq!(
            sup.health().down(),
            vec![("returns".to_string(), "bucket said 403".to_string())]
        );
        let _h2 = sup.spawn("ends", || async { Ok(()) });
        wait_until(|| sup.metrics().failures("ends") == 1).await;
        shutdown.cancel();
    }

    #[tokio::test]
    async fn a_critical_failure_shuts_the_appliance_down() {
        let shutdown = CancellationToken::new();
        let sup = Supervisor::new(TaskMetrics::default(), Arc::default(), shutdown.clone())
            .with_backoff(fast());
        let h = sup.spawn_critical("http", || async { Err("listener closed".to_string()) });
        h.await.unwrap();
        assert!(shutdown.is_cancelled());
        assert_eq!(sup.fatal_error().unwrap(), "http: listener closed");
    }

    #[test]
    fn a_panicking_round_is_counted_and_the_thread_goes_on() {
        let metrics = TaskMetrics::default();
        assert!(!run_guarded("compaction", &metrics, || panic!("bad block")));
        assert!(run_guarded("compaction", &metrics, || {}));
        assert_eq!(metrics.failures("compaction"), 1);
    }
}
