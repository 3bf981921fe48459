//! One rule group: its rules evaluated in order at aligned times, each rule's output
//! written before the next rule runs (so a later rule reads it), and a stale marker
//! written for every series a rule stopped producing. Alerting rules hand the alerts
//! due to the [`AlertSink`] after each evaluation, as Prometheus's group does.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::model::{Labels, stale_nan};
use crate::promql::{CancelFlag, Engine, Value};
use crate::rules::alerting::{
    Alert, AlertingRule, Alerts, Restore, RestoreOptions, TemplateInputs, restore,
};
use crate::rules::file::{Rule, RuleGroup, RuleKind};
use crate::storage::{Appendable, Queryable};
use crate::template::prometheus::Sample;

/// What evaluating needs: the engine and the storage it reads and writes.
#[derive(Clone)]
pub struct Evaluator {
    pub engine: Arc<Engine>,
    pub queryable: Arc<dyn Queryable>,
    pub appendable: Arc<dyn Appendable>,
    pub alerting: AlertSettings,
}

/// Where the alerts due after an evaluation go (the notifier).
pub trait AlertSink: Send + Sync {
    /// The alerts of the rule with expression `expr` that are due: firing ones to
    /// send or re-send, resolved ones to send as resolved.
    fn send(&self, expr: &str, alerts: Vec<Alert>);

    /// The Alertmanager URLs alerts go to, and those relabelling dropped
    /// (`/api/v1/alertmanagers`).
    fn alertmanagers(&self) -> (Vec<String>, Vec<String>) {
        (Vec::new(), Vec::new())
    }
}

/// What alerting rules need beyond the storage.
#[derive(Clone)]
pub struct AlertSettings {
    /// `$externalLabels` in templates.
    pub external_labels: Arc<BTreeMap<String, String>>,
    /// `$externalURL`, `externalURL`, `pathPrefix`.
    pub external_url: Arc<str>,
    /// `--rules.alert.resend-delay`.
    pub resend_delay_ms: i64,
    pub restore: RestoreOptions,
    /// `None`: alerts are evaluated and listed but go nowhere.
    pub sink: Option<Arc<dyn AlertSink>>,
}

impl std::fmt::Debug for AlertSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertSettings")
            .field("external_labels", &self.external_labels)
            .field("external_url", &self.external_url)
            .field("resend_delay_ms", &self.resend_delay_ms)
            .field("restore", &self.restore)
            .field("sink", &self.sink.is_some())
            .finish()
    }
}

impl Default for AlertSettings {
    fn default() -> Self {
        AlertSettings {
            external_labels: Arc::default(),
            external_url: Arc::from(""),
            resend_delay_ms: 60_000,
            restore: RestoreOptions::default(),
            sink: None,
        }
    }
}

/// How a rule's last evaluation went, as `/api/v1/rules` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A rule's state between evaluations.
#[derive(Debug, Clone)]
pub struct RuleState {
    pub health: Health,
    pub last_error: Option<String>,
    /// Unix ms of the last evaluation (0: never).
    pub last_evaluation_ms: i64,
    pub evaluation_seconds: f64,
    /// The series the last evaluation wrote (for stale markers).
    written: HashSet<Labels>,
    /// An alerting rule's alerts.
    pub alerts: Alerts,
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState {
            health: Health::Unknown,
            last_error: None,
            last_evaluation_ms: 0,
            evaluation_seconds: 0.0,
            written: HashSet::new(),
            alerts: Alerts {
                restored: true,
                ..Alerts::default()
            },
        }
    }
}

/// What a rule of a replaced group hands to its successor (matched by name and
/// labels): the series it wrote, and its alerts.
#[derive(Debug, Default)]
pub struct CarriedOver {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub written: HashSet<Labels>,
    pub alerts: Option<Alerts>,
}

/// What a replaced group hands to its successor.
#[derive(Debug, Default)]
pub struct Carried {
    pub rules: Vec<CarriedOver>,
    /// A restore of the `for` clocks that had not run yet.
    restore: Option<PendingRestore>,
}

/// A scheduled restore of the `for` clocks: how, and after how many more
/// evaluations (Prometheus restores after the second, so that recording rules the
/// alerts read have caught up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PendingRestore {
    how: Restore,
    after: u32,
}

/// A group as loaded: where it comes from, its rules, its interval, its state.
pub struct Group {
    pub file: String,
    pub spec: RuleGroup,
    /// The group's interval, or the global evaluation interval.
    pub interval_ms: i64,
    /// Each rule's templates, parsed (`None` for recording rules).
    alerting: Vec<Option<AlertingRule>>,
    state: Mutex<GroupState>,
}

#[derive(Debug, Clone, Default)]
pub struct GroupState {
    pub rules: Vec<RuleState>,
    pub last_evaluation_ms: i64,
    pub evaluation_seconds: f64,
    restore: Option<PendingRestore>,
    /// Replaced by a reload: an evaluation in flight stops at its next rule, and
    /// the successor holds the state.
    retired: bool,
}

/// What one evaluation of a group did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Evaluated {
    pub rules: usize,
    pub failed: usize,
}

impl Group {
    pub fn new(file: String, spec: RuleGroup, default_interval_ms: i64) -> Group {
        // A global interval of 0 is Prometheus's default, a minute.
        let default_interval_ms = if default_interval_ms > 0 {
            default_interval_ms
        } else {
            60_000
        };
        let interval_ms = spec
            .interval_ms
            .filter(|&ms| ms > 0)
            .unwrap_or(default_interval_ms);
        let rules = vec![RuleState::default(); spec.rules.len()];
        let alerting = spec
            .rules
            .iter()
            .map(|r| (r.kind == RuleKind::Alerting).then(|| AlertingRule::new(r)))
            .collect();
        Group {
            file,
            spec,
            interval_ms,
            alerting,
            state: Mutex::new(GroupState {
                rules,
                ..GroupState::default()
            }),
        }
    }

    /// Whether `other` is the same group with the same rules and interval (a reload
    /// keeps such a group, and its state, running).
    pub fn same_as(&self, other: &Group) -> bool {
        self.file == other.file && self.spec == other.spec && self.interval_ms == other.interval_ms
    }

    pub fn state(&self) -> GroupState {
        self.state.lock().clone()
    }

    /// What each rule wrote last and its alerts (taken: the group is being replaced,
    /// and stops evaluating). Waits for the rule being evaluated, if any.
    pub fn take_carried_over(&self) -> Carried {
        let mut state = self.state.lock();
        state.retired = true;
        let rules = self
            .spec
            .rules
            .iter()
            .zip(state.rules.iter_mut())
            .map(|(r, s)| CarriedOver {
                name: r.name.clone(),
                labels: r.labels.clone(),
                written: std::mem::take(&mut s.written),
                alerts: (r.kind == RuleKind::Alerting).then(|| std::mem::take(&mut s.alerts)),
            })
            .collect();
        Carried {
            rules,
            restore: state.restore.take(),
        }
    }

    /// Takes over what the group this one replaces wrote, and its alerts, as
    /// Prometheus's `CopyState`: the k-th rule of a name and labels takes what the
    /// k-th such rule had. Returns the series of rules this group no longer has.
    pub fn inherit(&self, carried: Carried) -> Vec<HashSet<Labels>> {
        let mut state = self.state.lock();
        let mut unused: Vec<Option<CarriedOver>> = carried.rules.into_iter().map(Some).collect();
        for (i, rule) in self.spec.rules.iter().enumerate() {
            let Some(c) = unused
                .iter_mut()
                .find(|c| {
                    c.as_ref()
                        .is_some_and(|c| c.name == rule.name && c.labels == rule.labels)
                })
                .and_then(Option::take)
            else {
                continue;
            };
            let rs = &mut state.rules[i];
            rs.written = c.written;
            if let (Some(mut alerts), RuleKind::Alerting) = (c.alerts, rule.kind) {
                alerts.restored = carried.restore.is_none();
                rs.alerts = alerts;
            }
        }
        if let Some(pending) = carried.restore {
            Self::mark_unrestored(&mut state, &self.alerting);
            state.restore = Some(pending);
        }
        unused.into_iter().flatten().map(|c| c.written).collect()
    }

    fn mark_unrestored(state: &mut GroupState, alerting: &[Option<AlertingRule>]) {
        for (rs, a) in state.rules.iter_mut().zip(alerting) {
            if a.is_some() {
                rs.alerts.restored = false;
            }
        }
    }

    /// Restores the alerts' `for` clocks after the second evaluation from now (a
    /// start, or a node taking over as leader). Until then no alert series is
    /// written. On a takeover the alerts this node held before are dropped, as they
    /// are stale, and so is its memory of their series (the leader since wrote them).
    pub fn schedule_restore(&self, how: Restore) {
        let mut state = self.state.lock();
        if how == Restore::Takeover {
            Self::forget_alerts(&mut state, &self.alerting);
        }
        Self::mark_unrestored(&mut state, &self.alerting);
        state.restore = Some(PendingRestore { how, after: 2 });
    }

    /// Forgets the alerts (a node that stopped leading: the new leader holds them,
    /// and writes their series).
    pub fn drop_alerts(&self) {
        let mut state = self.state.lock();
        Self::forget_alerts(&mut state, &self.alerting);
    }

    fn forget_alerts(state: &mut GroupState, alerting: &[Option<AlertingRule>]) {
        for (rs, a) in state.rules.iter_mut().zip(alerting) {
            if a.is_some() {
                rs.alerts.active.clear();
                rs.written.clear();
            }
        }
    }

    /// Prometheus's `Group.hash`: the xxhash of the labels `{file, name}`, which
    /// spreads groups over their interval.
    fn hash(&self) -> u64 {
        let mut b = Vec::with_capacity(self.file.len() + self.spec.name.len() + 12);
        for (n, v) in [
            ("file", self.file.as_str()),
            ("name", self.spec.name.as_str()),
        ] {
            b.extend_from_slice(n.as_bytes());
            b.push(0xff);
            b.extend_from_slice(v.as_bytes());
            b.push(0xff);
        }
        xxhash_rust::xxh64::xxh64(&b, 0)
    }

    /// The evaluation time of the interval holding `now_ms`, as Prometheus's
    /// `EvalTimestamp` aligns it (in nanoseconds, so the same group evaluates at the
    /// same instants in ODIN and Prometheus).
    pub fn eval_timestamp_ms(&self, now_ms: i64) -> i64 {
        let interval = i128::from(self.interval_ms) * 1_000_000;
        let now = i128::from(now_ms) * 1_000_000;
        let offset = i128::from(self.hash() % interval as u64);
        let adj = now - offset;
        let base = adj - adj.rem_euclid(interval);
        ((base + offset) / 1_000_000) as i64
    }

    /// Evaluates every rule in order at `ts_ms` (queries at `ts_ms - query_offset`),
    /// writing recording rules' samples. Blocks: call it from a blocking thread.
    pub fn evaluate(&self, ev: &Evaluator, ts_ms: i64, query_offset_ms: i64) -> Evaluated {
        let started = std::time::Instant::now();
        let at = ts_ms.saturating_sub(query_offset_ms);
        let mut done = Evaluated::default();
        for (i, rule) in self.spec.rules.iter().enumerate() {
            let rule_started = std::time::Instant::now();
            // The state is held while the rule runs: a reload or a change of leader
            // waits for it rather than see it half done.
            let mut state = self.state.lock();
            if state.retired {
                return done;
            }
            let s = &mut state.rules[i];
            let previous = std::mem::take(&mut s.written);
            let outcome = match &self.alerting[i] {
                None => record(ev, rule, at, self.spec.limit, &previous),
                Some(alerting) => self.alert(ev, rule, alerting, &mut s.alerts, at, &previous),
            };
            done.rules += 1;
            s.last_evaluation_ms = crate::model::now_ms();
            s.evaluation_seconds = rule_started.elapsed().as_secs_f64();
            match outcome {
                Ok(written) => {
                    s.health = Health::Ok;
                    s.last_error = None;
                    s.written = written;
                }
                Err(e) => {
                    done.failed += 1;
                    tracing::warn!(group = self.spec.name, file = self.file, rule = rule.name, error = %e, "rule evaluation failed");
                    s.health = Health::Err;
                    s.last_error = Some(e);
                    // What was written before stays to be marked stale later.
                    s.written = previous;
                }
            }
        }
        let mut state = self.state.lock();
        state.last_evaluation_ms = crate::model::now_ms();
        state.evaluation_seconds = started.elapsed().as_secs_f64();
        match state.restore {
            Some(PendingRestore { how, after: 0 | 1 }) => {
                state.restore = None;
                self.restore_alerts(ev, &mut state, how);
            }
            Some(ref mut pending) => pending.after -= 1,
            None => {}
        }
        done
    }

    /// One alerting rule at `at`: its alerts updated, their series written, and the
    /// alerts due handed to the sink. Returns the series written.
    fn alert(
        &self,
        ev: &Evaluator,
        rule: &Rule,
        alerting: &AlertingRule,
        alerts: &mut Alerts,
        at: i64,
        previous: &HashSet<Labels>,
    ) -> Result<HashSet<Labels>, String> {
        let result = query_vector(ev, &rule.expr, at)?;
        let query = |q: &str| -> Result<Vec<Sample>, String> {
            Ok(query_vector(ev, q, at)?
                .into_iter()
                .map(|(labels, value)| Sample {
                    labels: std::rc::Rc::new(
                        labels
                            .iter()
                            .map(|l| (l.name.to_string(), l.value.to_string()))
                            .collect(),
                    ),
                    value,
                })
                .collect())
        };
        let inputs = TemplateInputs {
            external_labels: &ev.alerting.external_labels,
            external_url: &ev.alerting.external_url,
            query: &query,
        };
        let samples = alerting.eval(alerts, result, at, self.spec.limit, &inputs)?;
        let due = alerts.due(at, ev.alerting.resend_delay_ms, self.interval_ms);
        if let Some(sink) = &ev.alerting.sink {
            if !due.is_empty() {
                sink.send(&rule.expr, due);
            }
        }
        write(ev, &rule.name, samples, at, previous)
    }

    fn restore_alerts(&self, ev: &Evaluator, state: &mut GroupState, how: Restore) {
        let now = crate::model::now_ms();
        for (i, alerting) in self.alerting.iter().enumerate() {
            let Some(alerting) = alerting else { continue };
            if let Err(e) = restore(
                alerting,
                &mut state.rules[i].alerts,
                &*ev.queryable,
                now,
                how,
                ev.alerting.restore,
            ) {
                tracing::warn!(group = self.spec.name, rule = self.spec.rules[i].name, error = %e, "cannot restore the alerts' for state");
            }
        }
    }
}

/// An instant query whose result must be a vector (a scalar is one sample without
/// labels), as Prometheus's `EngineQueryFunc`.
fn query_vector(ev: &Evaluator, expr: &str, at: i64) -> Result<Vec<(Labels, f64)>, String> {
    let value = ev
        .engine
        .instant(&*ev.queryable, expr, at, &CancelFlag::default())
        .map_err(|e| e.to_string())?;
    match value {
        Value::Vector(v) => Ok(v.into_iter().map(|e| (e.labels, e.v)).collect()),
        Value::Scalar { v, .. } => Ok(vec![(Labels::default(), v)]),
        other => Err(format!(
            "rule result is not a vector or scalar: {}",
            other.type_name()
        )),
    }
}

/// One recording rule at `at`: its samples (named, its labels set), and a stale
/// marker for each series of `previous` it no longer has. Returns what it wrote.
fn record(
    ev: &Evaluator,
    rule: &Rule,
    at: i64,
    limit: usize,
    previous: &HashSet<Labels>,
) -> Result<HashSet<Labels>, String> {
    let elements = query_vector(ev, &rule.expr, at)?;
    let mut out: Vec<(Labels, f64)> = Vec::with_capacity(elements.len());
    let mut seen = HashSet::with_capacity(elements.len());
    for (labels, v) in elements {
        let mut b = labels.to_builder();
        b.set("__name__", rule.name.as_str());
        for (k, val) in &rule.labels {
            b.set(k.as_str(), val.as_str());
        }
        let labels = b.build();
        if !seen.insert(labels.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels"
                    .to_string(),
            );
        }
        out.push((labels, v));
    }
    if limit > 0 && out.len() > limit {
        return Err(format!(
            "exceeded limit of {limit} with {} series",
            out.len()
        ));
    }
    write(ev, &rule.name, out, at, previous)
}

/// Writes a rule's samples at `at` and a stale marker for each series of
/// `previous` it no longer has; returns the series written.
fn write(
    ev: &Evaluator,
    rule: &str,
    samples: Vec<(Labels, f64)>,
    at: i64,
    previous: &HashSet<Labels>,
) -> Result<HashSet<Labels>, String> {
    let mut app = ev.appendable.appender();
    let mut seen = HashSet::with_capacity(samples.len());
    for (labels, v) in samples {
        app.append(&labels, at, v).map_err(|e| e.to_string())?;
        seen.insert(labels);
    }
    for gone in previous.difference(&seen) {
        app.append(gone, at, stale_nan())
            .map_err(|e| e.to_string())?;
    }
    let summary = app.commit().map_err(|e| e.to_string())?;
    let refused = summary.out_of_order + summary.out_of_bounds + summary.too_far_in_future;
    if refused > 0 {
        // Prometheus logs these and goes on: the rule itself worked.
        tracing::warn!(rule, refused, "recorded samples refused by the storage");
    }
    Ok(seen)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::promql::EngineOptions;
    use crate::rules::alerting;
    use crate::rules::file::parse;
    use crate::tsdb::{Db, DbOptions};

    const T: i64 = 1_700_000_000_000;

    fn setup(dir: &std::path::Path) -> (Db, Evaluator) {
        let db = Db::open_for_tests(dir, DbOptions::default(), &Default::default());
        let ev = Evaluator {
            engine: Arc::new(Engine::new(EngineOptions::default())),
            queryable: Arc::new(db.clone()),
            appendable: Arc::new(db.clone()),
            alerting: AlertSettings::default(),
        };
        (db, ev)
    }

    fn write(db: &Db, series: &[(&str, f64)], t: i64) {
        let mut app = db.appender();
        for (instance, v) in series {
            let l = Labels::from_pairs([("__name__", "up"), ("instance", instance)]);
            app.append(&l, t, *v).unwrap();
        }
        app.commit().unwrap();
    }

    fn value(ev: &Evaluator, q: &str, t: i64) -> Vec<(String, f64)> {
        let Value::Vector(v) = ev
            .engine
            .instant(&*ev.queryable, q, t, &CancelFlag::default())
            .unwrap()
        else {
            panic!("not a vector")
        };
        let mut out: Vec<(String, f64)> =
            v.into_iter().map(|e| (e.labels.to_string(), e.v)).collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn group(yaml: &str) -> Group {
        let mut f = parse(yaml, "rules.yml").unwrap();
        Group::new("rules.yml".into(), f.groups.remove(0), 60_000)
    }

    #[test]
    fn recording_rules_chain_mark_stale_and_fail_by_their_limits() {
        let dir = tempfile::tempdir().unwrap();
        let (db, ev) = setup(dir.path());
        let g = group(
            r#"groups:
  - name: g
    rules:
      - record: job:up:sum
        expr: sum(up)
        labels: {team: infra}
      - record: instance:up:doubled
        expr: up * 2
      - record: job:up:sum_seen
        expr: job:up:sum + 0
"#,
        );
        write(&db, &[("a", 1.0), ("b", 1.0)], T);
        let done = g.evaluate(&ev, T, 0);
        assert_eq!(
            done,
            Evaluated {
                rules: 3,
                failed: 0
            }
        );
        assert_eq!(
            value(&ev, "job:up:sum", T),
            [(r#"{__name__="job:up:sum", team="infra"}"#.to_string(), 2.0)]
        );
        // The third rule read the first one's output of the same evaluation.
        assert_eq!(value(&ev, "job:up:sum_seen", T).len(), 1);
        assert_eq!(value(&ev, "instance:up:doubled", T).len(), 2);
        // `b` goes away (its scrape marks it stale): the recorded series gets a
        // stale marker too, so it vanishes at once instead of five minutes later.
        write(&db, &[("a", 1.0), ("b", stale_nan())], T + 60_000);
        g.evaluate(&ev, T + 60_000, 0);
        assert_eq!(
            value(&ev, "instance:up:doubled", T + 60_000),
            [(
                r#"{__name__="instance:up:doubled", instance="a"}"#.to_string(),
                2.0
            )]
        );
        let state = g.state();
        assert!(state.rules.iter().all(|r| r.health == Health::Ok));
        assert!(state.last_evaluation_ms > 0);

        // A rule over its limit fails whole, and says so.
        let limited = group(
            r#"groups:
  - name: l
    limit: 1
    rules:
      - record: x:up
        expr: up
      - record: dup
        expr: up
        labels: {instance: same}
      - record: bad
        expr: 'label_replace(up, "a", "b", "c", "(")'
"#,
        );
        write(&db, &[("a", 1.0), ("b", 1.0)], T + 120_000);
        let done = limited.evaluate(&ev, T + 120_000, 0);
        assert_eq!(
            done,
            Evaluated {
                rules: 3,
                failed: 3
            }
        );
        let state = limited.state();
        assert_eq!(
            state.rules[0].last_error.as_deref(),
            Some("exceeded limit of 1 with 2 series")
        );
        assert!(
            state.rules[1]
                .last_error
                .as_deref()
                .unwrap()
                .contains("same labelset")
        );
        assert_eq!(state.rules[2].health, Health::Err);
        assert!(value(&ev, "x:up", T + 120_000).is_empty());
    }

    #[derive(Default)]
    struct Captured(Mutex<Vec<(String, Vec<Alert>)>>);

    impl AlertSink for Captured {
        fn send(&self, expr: &str, alerts: Vec<Alert>) {
            self.0.lock().push((expr.to_string(), alerts));
        }
    }

    #[test]
    fn alerting_rules_write_alerts_series_mark_them_stale_and_notify() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut ev) = setup(dir.path());
        let sink = Arc::new(Captured::default());
        ev.alerting.sink = Some(sink.clone());
        let g = group(
            r#"groups:
  - name: a
    rules:
      - record: up:doubled
        expr: up * 2
      - alert: Down
        expr: up:doubled == 0
        for: 1m
        annotations: {summary: '{{ $labels.instance }} is down ({{ query "count(up)" | first | value }} targets)'}
"#,
        );
        let alerts_now = |t: i64| value(&ev, "ALERTS", t);
        write(&db, &[("a", 0.0), ("b", 1.0)], T);
        g.evaluate(&ev, T, 0);
        // The alert reads the recording rule's output of the same evaluation.
        assert_eq!(
            alerts_now(T),
            [(
                r#"{__name__="ALERTS", alertname="Down", alertstate="pending", instance="a"}"#
                    .to_string(),
                1.0
            )]
        );
        assert_eq!(value(&ev, "ALERTS_FOR_STATE", T)[0].1, (T / 1000) as f64);
        assert!(sink.0.lock().is_empty(), "pending alerts are not sent");
        write(&db, &[("a", 0.0), ("b", 1.0)], T + 60_000);
        g.evaluate(&ev, T + 60_000, 0);
        // Firing now; the pending series got a stale marker and is gone at once.
        assert_eq!(alerts_now(T + 60_000).len(), 1);
        assert!(alerts_now(T + 60_000)[0].0.contains("firing"));
        {
            let sent = sink.0.lock();
            assert_eq!(sent.len(), 1);
            assert_eq!(sent[0].0, "up:doubled == 0");
            let a = &sent[0].1[0];
            assert_eq!(a.annotations["summary"], "a is down (2 targets)");
            assert_eq!(a.fired_at_ms, T + 60_000);
        }
        let state = g.state();
        assert_eq!(state.rules[1].alerts.state(), alerting::AlertState::Firing);
        assert_eq!(state.rules[1].health, Health::Ok);
        // Back up: resolved, sent as such, its series stale.
        write(&db, &[("a", 1.0), ("b", 1.0)], T + 120_000);
        g.evaluate(&ev, T + 120_000, 0);
        assert!(alerts_now(T + 120_000).is_empty());
        let sent = sink.0.lock();
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[1].1[0].resolved_at_ms, T + 120_000);
    }

    #[test]
    fn reloads_and_leadership_changes_keep_the_alerts_for_clocks() {
        let dir = tempfile::tempdir().unwrap();
        let (db, ev) = setup(dir.path());
        let spec = r#"groups:
  - name: d
    rules:
      - alert: Dup
        expr: up == 0
        for: 5m
        labels: {severity: warning}
      - alert: Dup
        expr: up == 0
        for: 5m
        labels: {severity: critical}
"#;
        let g = group(spec);
        write(&db, &[("a", 0.0)], T);
        g.evaluate(&ev, T, 0);
        let active_at = |g: &Group, i: usize| {
            g.state().rules[i]
                .alerts
                .current()
                .first()
                .map(|a| a.active_at_ms)
        };
        assert_eq!((active_at(&g, 0), active_at(&g, 1)), (Some(T), Some(T)));
        // A reload that changes the group: each rule of a name and labels keeps its
        // own alerts (Prometheus's CopyState), and the old group stops.
        let changed = group(&format!("{spec}      - record: x\n        expr: up\n"));
        let leftovers = changed.inherit(g.take_carried_over());
        assert!(leftovers.is_empty());
        assert_eq!(
            (active_at(&changed, 0), active_at(&changed, 1)),
            (Some(T), Some(T))
        );
        assert_eq!(
            g.evaluate(&ev, T + 60_000, 0).rules,
            0,
            "a retired group ran"
        );
        write(&db, &[("a", 0.0)], T + 60_000);
        changed.evaluate(&ev, T + 60_000, 0);
        assert_eq!(active_at(&changed, 1), Some(T));
        // This node stops leading, then leads again: the alerts come back from the
        // ALERTS_FOR_STATE written meanwhile, after the second evaluation, and the
        // series are not marked stale in between.
        changed.drop_alerts();
        assert_eq!(active_at(&changed, 0), None);
        changed.schedule_restore(Restore::Takeover);
        let now = crate::model::now_ms() / 1000 * 1000;
        write(&db, &[("a", 0.0)], now);
        {
            let mut app = db.appender();
            for sev in ["warning", "critical"] {
                let l = Labels::from_pairs([
                    ("__name__", "ALERTS_FOR_STATE"),
                    ("alertname", "Dup"),
                    ("instance", "a"),
                    ("severity", sev),
                ]);
                app.append(&l, now - 1000, (T / 1000) as f64).unwrap();
            }
            app.commit().unwrap();
        }
        changed.evaluate(&ev, now, 0);
        assert_eq!(active_at(&changed, 0), Some(now), "restored too early");
        assert_eq!(value(&ev, "ALERTS_FOR_STATE", now).len(), 2, "marked stale");
        changed.evaluate(&ev, now, 0);
        assert_eq!(
            (active_at(&changed, 0), active_at(&changed, 1)),
            (Some(T), Some(T))
        );
    }

    #[test]
    fn query_offset_evaluates_and_writes_in_the_past() {
        let dir = tempfile::tempdir().unwrap();
        let (db, ev) = setup(dir.path());
        let g = group(
            "groups:\n  - name: o\n    query_offset: 1m\n    rules:\n      - record: r\n        expr: up\n",
        );
        write(&db, &[("a", 5.0)], T);
        g.evaluate(&ev, T + 60_000, g.spec.query_offset_ms.unwrap());
        assert_eq!(value(&ev, "r", T).len(), 1);
        assert_eq!(value(&ev, "timestamp(r)", T)[0].1, (T / 1000) as f64);
    }

    #[test]
    fn evaluation_times_are_aligned_per_group_as_prometheus_aligns_them() {
        let g = group("groups:\n  - name: g\n    interval: 30s\n    rules: []\n");
        let now = T + 12_345;
        let ts = g.eval_timestamp_ms(now);
        assert!(ts <= now && now - ts < 30_000, "{ts} {now}");
        // Every evaluation of the group falls at the same offset in its interval.
        for later in [now + 1, now + 29_999, now + 30_000, now + 1_000_000] {
            let t = g.eval_timestamp_ms(later);
            assert_eq!((t - ts).rem_euclid(30_000), 0);
            assert!(t <= later && later - t < 30_000);
        }
    }
}
