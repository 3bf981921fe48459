//! Rules (issue 18): Prometheus's rule files, evaluated on the PromQL engine.
//!
//! * [`file`]: the rule file format and its checks (`odin check rules`).
//! * [`group`]: one group's evaluation: rules in order at aligned times, recording
//!   rules' samples written through the storage seam (so a later rule reads them),
//!   stale markers for series a rule stopped producing.
//! * [`RuleManager`]: the groups of the configured `rule_files`, each on its own
//!   task; a reload keeps an unchanged group (and its state) running. In a cluster
//!   only the leader evaluates, so no recorded sample is written twice.
//!
//! * [`alerting`]: alerting rules' states (pending, firing, resolved), their
//!   `ALERTS` and `ALERTS_FOR_STATE` series, and the restoring of `for` clocks after
//!   a restart or a change of leader.

pub mod alerting;
pub mod file;
pub mod group;
pub mod metrics;
pub mod notifier;
pub mod unittest;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use std::collections::HashSet;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

pub use group::{AlertSettings, AlertSink, Evaluator, Group, GroupState, Health};

use crate::model::Labels;
use alerting::Restore;
use group::Carried;

pub use metrics::RuleMetrics;

use metrics::GroupLabel;

/// The rule packs built into ODIN, by the name `rule_files` gives them
/// (`builtin:<name>`).
pub const BUILTIN_PACKS: &[(&str, &str)] =
    &[("gpu-server", include_str!("../../rules/gpu-server.yml"))];

/// Reads the rule files the patterns name (globs, relative to `base`, or
/// `builtin:<pack>`), in order, each once. Any file that does not load fails the
/// whole set, as Prometheus refuses a configuration whose rules do not load.
pub fn load_files(
    patterns: &[String],
    base: &Path,
) -> Result<Vec<(String, file::RuleFile)>, String> {
    let mut out: Vec<(String, file::RuleFile)> = Vec::new();
    for pattern in patterns {
        if let Some(pack) = pattern.strip_prefix("builtin:") {
            let Some((_, text)) = BUILTIN_PACKS.iter().find(|(n, _)| *n == pack) else {
                let known: Vec<&str> = BUILTIN_PACKS.iter().map(|(n, _)| *n).collect();
                return Err(format!(
                    "no built-in rule pack {pack:?} (there is: {})",
                    known.join(", ")
                ));
            };
            if !out.iter().any(|(n, _)| n == pattern) {
                let parsed = file::parse(text, pattern).map_err(|errors| errors.join("\n"))?;
                out.push((pattern.clone(), parsed));
            }
            continue;
        }
        let full = if Path::new(pattern).is_absolute() {
            PathBuf::from(pattern)
        } else {
            base.join(pattern)
        };
        let paths = crate::scrape::discovery::glob(&full)
            .map_err(|e| format!("rule_files {pattern:?}: {e}"))?;
        for path in paths {
            let name = path.display().to_string();
            if out.iter().any(|(n, _)| *n == name) {
                continue;
            }
            let text = std::fs::read_to_string(&path).map_err(|e| format!("read {name}: {e}"))?;
            let parsed = file::parse(&text, &name).map_err(|errors| errors.join("\n"))?;
            out.push((name, parsed));
        }
    }
    Ok(out)
}

fn group_label(g: &Group) -> GroupLabel {
    GroupLabel {
        rule_group: format!("{};{}", g.file, g.spec.name),
    }
}

/// The running groups.
pub struct RuleManager {
    evaluator: Evaluator,
    /// Whether this node evaluates (a cluster's leader; a single node always).
    active: Arc<AtomicBool>,
    groups: Mutex<Vec<Running>>,
    /// Whether the rules were loaded once: the groups of the first load restore
    /// their alerts' `for` clocks, as after a restart; later ones need not.
    loaded: AtomicBool,
    shutdown: CancellationToken,
    metrics: RuleMetrics,
}

struct Running {
    group: Arc<Group>,
    stop: CancellationToken,
}

impl RuleManager {
    pub fn new(
        evaluator: Evaluator,
        metrics: RuleMetrics,
        shutdown: CancellationToken,
    ) -> Arc<RuleManager> {
        Arc::new(RuleManager {
            evaluator,
            active: Arc::new(AtomicBool::new(true)),
            groups: Mutex::new(Vec::new()),
            loaded: AtomicBool::new(false),
            shutdown,
            metrics,
        })
    }

    /// In a cluster only the leader evaluates; a node that takes over goes on at
    /// the next aligned time of each group, and takes the alerts' `for` clocks from
    /// the `ALERTS_FOR_STATE` series the previous leader wrote (replicated here). A
    /// node that stops leading forgets its alerts.
    pub fn set_active(&self, on: bool) {
        let was = self.active.swap(on, Ordering::AcqRel);
        if was != on {
            for g in self.groups() {
                if on {
                    g.schedule_restore(Restore::Takeover);
                } else {
                    g.drop_alerts();
                }
            }
            tracing::info!(
                evaluates = on,
                "rule evaluation {}",
                if on {
                    "taken over"
                } else {
                    "left to the leader"
                }
            );
        }
    }

    /// The groups now, in file and group order.
    /// The Alertmanagers alerts go to, and those relabelling dropped.
    pub fn alertmanagers(&self) -> (Vec<String>, Vec<String>) {
        self.evaluator
            .alerting
            .sink
            .as_ref()
            .map(|s| s.alertmanagers())
            .unwrap_or_default()
    }

    pub fn groups(&self) -> Vec<Arc<Group>> {
        self.groups.lock().iter().map(|r| r.group.clone()).collect()
    }

    /// Replaces the groups with those of `files`: a group whose file, name, rules
    /// and interval are unchanged keeps running with its state; the others start
    /// (or stop). Must be called from within the runtime.
    pub fn update(&self, files: Vec<(String, file::RuleFile)>, default_interval_ms: i64) {
        let first_load = !self.loaded.swap(true, Ordering::AcqRel);
        let mut running = self.groups.lock();
        let mut old: Vec<Running> = std::mem::take(&mut *running);
        let mut fresh_groups = Vec::new();
        for (name, f) in files {
            for spec in f.groups {
                let fresh = Group::new(name.clone(), spec, default_interval_ms);
                match old.iter().position(|r| r.group.same_as(&fresh)) {
                    Some(i) => running.push(old.remove(i)),
                    None => fresh_groups.push(fresh),
                }
            }
        }
        // What the replaced groups wrote: a changed group's rules take over their
        // series (by name), so a series they stop producing is marked stale as
        // usual; the series of rules and groups that are gone are marked now.
        for gone in &old {
            gone.stop.cancel();
        }
        let mut leftovers: Vec<HashSet<Labels>> = Vec::new();
        let mut previous: Vec<(String, String, Carried)> = old
            .iter()
            .map(|r| {
                (
                    r.group.file.clone(),
                    r.group.spec.name.clone(),
                    r.group.take_carried_over(),
                )
            })
            .collect();
        for fresh in fresh_groups {
            if first_load && self.active.load(Ordering::Acquire) {
                fresh.schedule_restore(Restore::AfterOutage);
            }
            if let Some(i) = previous
                .iter()
                .position(|(f, n, _)| *f == fresh.file && *n == fresh.spec.name)
            {
                let (_, _, carried) = previous.remove(i);
                leftovers.extend(fresh.inherit(carried));
            }
            let group = Arc::new(fresh);
            let stop = self.shutdown.child_token();
            self.spawn(group.clone(), stop.clone());
            running.push(Running { group, stop });
        }
        leftovers.extend(
            previous
                .into_iter()
                .flat_map(|(_, _, c)| c.rules.into_iter().map(|r| r.written)),
        );
        self.mark_stale(leftovers);
        // The self-metrics of groups that are gone (a changed group keeps its own).
        let kept: HashSet<GroupLabel> = running.iter().map(|r| group_label(&r.group)).collect();
        for gone in old {
            let label = group_label(&gone.group);
            if kept.contains(&label) {
                continue;
            }
            for f in [
                &self.metrics.last_duration_seconds,
                &self.metrics.interval_seconds,
            ] {
                f.remove(&label);
            }
            for f in [
                &self.metrics.evaluations,
                &self.metrics.evaluation_failures,
                &self.metrics.iterations_missed,
            ] {
                f.remove(&label);
            }
            self.metrics.rules.remove(&label);
        }
    }

    /// Writes a stale marker now for each series (of rules that are gone), where
    /// this node evaluates; off the async workers.
    fn mark_stale(&self, series: Vec<HashSet<Labels>>) {
        let series: Vec<Labels> = series.into_iter().flatten().collect();
        if series.is_empty() || !self.active.load(Ordering::Acquire) {
            return;
        }
        let appendable = self.evaluator.appendable.clone();
        tokio::task::spawn_blocking(move || {
            let now = crate::model::now_ms();
            let mut app = appendable.appender();
            for s in &series {
                if let Err(e) = app.append(s, now, crate::model::stale_nan()) {
                    tracing::warn!(series = %s, error = %e, "cannot mark a removed rule's series stale");
                }
            }
            if let Err(e) = app.commit() {
                tracing::warn!(error = %e, "cannot mark removed rules' series stale");
            }
        });
    }

    fn spawn(&self, group: Arc<Group>, stop: CancellationToken) {
        let (evaluator, active) = (self.evaluator.clone(), self.active.clone());
        let metrics = self.metrics.clone();
        let label = group_label(&group);
        metrics
            .interval_seconds
            .get_or_create(&label)
            .set(group.interval_ms as f64 / 1000.0);
        metrics
            .rules
            .get_or_create(&label)
            .set(group.spec.rules.len() as i64);
        tokio::spawn(async move {
            let interval = group.interval_ms;
            let offset = group.spec.query_offset_ms.unwrap_or(0);
            // The next slot, as Prometheus starts a group: the current one may have
            // been evaluated already (by the group this one replaces).
            let mut next = group.eval_timestamp_ms(crate::model::now_ms()) + interval;
            loop {
                let now = crate::model::now_ms();
                if next <= now - interval {
                    // Evaluations missed (a stall): counted, then on from the latest.
                    let latest = group.eval_timestamp_ms(now);
                    let missed = (latest - next) / interval;
                    metrics
                        .iterations_missed
                        .get_or_create(&label)
                        .inc_by(u64::try_from(missed).unwrap_or(0));
                    next = latest;
                }
                let wait = Duration::from_millis(u64::try_from(next - now).unwrap_or(0));
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                if active.load(Ordering::Acquire) {
                    let (g, ev) = (group.clone(), evaluator.clone());
                    let at = next;
                    let started = std::time::Instant::now();
                    let evaluated =
                        tokio::task::spawn_blocking(move || g.evaluate(&ev, at, offset)).await;
                    match evaluated {
                        Ok(done) => {
                            metrics
                                .evaluations
                                .get_or_create(&label)
                                .inc_by(done.rules as u64);
                            metrics
                                .evaluation_failures
                                .get_or_create(&label)
                                .inc_by(done.failed as u64);
                        }
                        Err(e) => {
                            metrics.evaluation_failures.get_or_create(&label).inc();
                            tracing::error!(group = group.spec.name, error = %e, "rule group evaluation panicked");
                        }
                    }
                    metrics
                        .last_duration_seconds
                        .get_or_create(&label)
                        .set(started.elapsed().as_secs_f64());
                }
                next += interval;
            }
        });
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn built_in_packs_load_by_name_and_an_unknown_one_is_an_error() {
        let files = load_files(&["builtin:gpu-server".to_string()], Path::new(".")).unwrap();
        assert_eq!(files.len(), 1);
        let names: Vec<&str> = files[0]
            .1
            .groups
            .iter()
            .flat_map(|g| g.rules.iter().map(|r| r.name.as_str()))
            .collect();
        for want in [
            "instance:node_cpu_utilisation:rate5m",
            "instance:node_memory_utilisation:ratio",
            "instance:node_filesystem_utilisation:ratio",
            "instance:node_network_receive_bytes:rate5m",
            "instance:node_network_transmit_bytes:rate5m",
            "gpu:utilization:mean5m",
            "gpu:memory_used:mean5m",
            "gpu:temperature:max5m",
            "gpu:power_usage:mean5m",
            "namespace:container_cpu_usage:sum_rate5m",
            "namespace:container_memory_usage:sum",
            "Watchdog",
        ] {
            assert!(names.contains(&want), "{want} missing: {names:?}");
        }
        let err = load_files(&["builtin:nope".to_string()], Path::new(".")).unwrap_err();
        assert!(err.contains("gpu-server"), "{err}");
        // The embedded default runs the pack.
        let default = crate::config::Config::embedded_default().unwrap();
        assert_eq!(default.rule_files, ["builtin:gpu-server"]);
    }
}
