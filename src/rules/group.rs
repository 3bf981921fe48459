//! One rule group: its rules evaluated in order at aligned times, each recording
//! rule's output written before the next rule runs (so a later rule reads it), and
//! a stale marker written for every series a rule stopped producing.

use std::collections::HashSet;
use std::sync::Arc;

use parking_lot::Mutex;

use crate::model::{Labels, stale_nan};
use crate::promql::{CancelFlag, Engine, Value};
use crate::rules::file::{Rule, RuleGroup, RuleKind};
use crate::storage::{Appendable, Queryable};

/// What evaluating needs: the engine and the storage it reads and writes.
#[derive(Clone)]
pub struct Evaluator {
    pub engine: Arc<Engine>,
    pub queryable: Arc<dyn Queryable>,
    pub appendable: Arc<dyn Appendable>,
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
}

impl Default for RuleState {
    fn default() -> Self {
        RuleState {
            health: Health::Unknown,
            last_error: None,
            last_evaluation_ms: 0,
            evaluation_seconds: 0.0,
            written: HashSet::new(),
        }
    }
}

/// A group as loaded: where it comes from, its rules, its interval, its state.
pub struct Group {
    pub file: String,
    pub spec: RuleGroup,
    /// The group's interval, or the global evaluation interval.
    pub interval_ms: i64,
    state: Mutex<GroupState>,
}

#[derive(Debug, Clone, Default)]
pub struct GroupState {
    pub rules: Vec<RuleState>,
    pub last_evaluation_ms: i64,
    pub evaluation_seconds: f64,
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
        Group {
            file,
            spec,
            interval_ms,
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

    /// The series each rule wrote last, by rule name (taken: the group is being
    /// replaced).
    pub fn take_written(&self) -> Vec<(String, HashSet<Labels>)> {
        let mut state = self.state.lock();
        self.spec
            .rules
            .iter()
            .zip(state.rules.iter_mut())
            .map(|(r, s)| (r.name.clone(), std::mem::take(&mut s.written)))
            .collect()
    }

    /// Takes over what the group this one replaces wrote, rule by rule name;
    /// returns the series of rules this group no longer has.
    pub fn inherit(&self, written: Vec<(String, HashSet<Labels>)>) -> Vec<HashSet<Labels>> {
        let mut state = self.state.lock();
        let mut leftovers = Vec::new();
        for (name, series) in written {
            match self.spec.rules.iter().position(|r| r.name == name) {
                Some(i) if state.rules[i].written.is_empty() => state.rules[i].written = series,
                _ => leftovers.push(series),
            }
        }
        leftovers
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
            if rule.kind != RuleKind::Recording {
                continue;
            }
            let rule_started = std::time::Instant::now();
            let previous = std::mem::take(&mut self.state.lock().rules[i].written);
            let outcome = record(ev, rule, at, self.spec.limit, &previous);
            done.rules += 1;
            let mut state = self.state.lock();
            let s = &mut state.rules[i];
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
        done
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
    let value = ev
        .engine
        .instant(&*ev.queryable, &rule.expr, at, &CancelFlag::default())
        .map_err(|e| e.to_string())?;
    let elements: Vec<(Labels, f64)> = match value {
        Value::Vector(v) => v.into_iter().map(|e| (e.labels, e.v)).collect(),
        Value::Scalar { v, .. } => vec![(Labels::default(), v)],
        other => {
            return Err(format!(
                "rule result is not a vector or scalar: {}",
                other.type_name()
            ));
        }
    };
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
    let mut app = ev.appendable.appender();
    for (labels, v) in &out {
        app.append(labels, at, *v).map_err(|e| e.to_string())?;
    }
    for gone in previous.difference(&seen) {
        app.append(gone, at, stale_nan())
            .map_err(|e| e.to_string())?;
    }
    let summary = app.commit().map_err(|e| e.to_string())?;
    let refused = summary.out_of_order + summary.out_of_bounds + summary.too_far_in_future;
    if refused > 0 {
        // Prometheus logs these and goes on: the rule itself worked.
        tracing::warn!(
            rule = rule.name,
            refused,
            "recorded samples refused by the storage"
        );
    }
    Ok(seen)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::promql::EngineOptions;
    use crate::rules::file::parse;
    use crate::tsdb::{Db, DbOptions};

    const T: i64 = 1_700_000_000_000;

    fn setup(dir: &std::path::Path) -> (Db, Evaluator) {
        let db = Db::open_for_tests(dir, DbOptions::default(), &Default::default());
        let ev = Evaluator {
            engine: Arc::new(Engine::new(EngineOptions::default())),
            queryable: Arc::new(db.clone()),
            appendable: Arc::new(db.clone()),
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
