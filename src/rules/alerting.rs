//! Alerting rules, as Prometheus 2.42's `rules.AlertingRule` runs them.
//!
//! Each evaluation turns the expression's result into alerts: the sample's labels
//! without `__name__`, the rule's labels (expanded as templates) and `alertname`;
//! the annotations expanded over the same data. A new alert is *pending* from that
//! evaluation's time (`activeAt`) and *firing* once it has been active for `for`.
//! An alert whose series is gone is *inactive* (resolved) at once, unless it was
//! firing and `keep_firing_for` holds it; a resolved alert is kept 15 minutes so
//! that Alertmanager hears of the resolution.
//!
//! Every evaluation writes `ALERTS{alertname, alertstate, …} 1` and
//! `ALERTS_FOR_STATE{alertname, …} <activeAt in Unix seconds>` for each active alert,
//! and (by the group, as for recording rules) a stale marker for each of those
//! series that is gone. After a restart — and, in a cluster, when a node becomes the
//! leader — the `for` clocks are restored from `ALERTS_FOR_STATE` ([`restore`]), so
//! an alert pending when the process stopped does not start waiting from zero.

use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;

use crate::model::{Labels, Matcher, is_stale_nan};
use crate::rules::file::Rule;
use crate::storage::{Queryable, SelectHints};
use crate::template::prometheus::{AlertData, AlertTemplate, Environment, QueryFn};

/// How long a resolved alert is kept (and re-sent as resolved) before it is
/// forgotten: Prometheus's `resolvedRetention`.
pub const RESOLVED_RETENTION_MS: i64 = 15 * 60_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum AlertState {
    Inactive,
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

/// One alert of a rule. Times are Unix ms; 0 means "not yet".
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// The identifying labels, `alertname` included.
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    /// The expression's value at the last evaluation.
    pub value: f64,
    pub active_at_ms: i64,
    pub fired_at_ms: i64,
    pub resolved_at_ms: i64,
    pub last_sent_at_ms: i64,
    /// Until when Alertmanager should hold the alert without hearing of it again.
    pub valid_until_ms: i64,
    pub keep_firing_since_ms: i64,
}

impl Alert {
    /// Prometheus's `needsSending`: pending alerts never; a resolution not yet sent;
    /// otherwise once per resend delay.
    fn needs_sending(&self, ts_ms: i64, resend_delay_ms: i64) -> bool {
        if self.state == AlertState::Pending {
            return false;
        }
        if self.resolved_at_ms > self.last_sent_at_ms {
            return true;
        }
        self.last_sent_at_ms + resend_delay_ms < ts_ms
    }
}

/// A rule's alerts between evaluations.
#[derive(Debug, Clone, Default)]
pub struct Alerts {
    /// By identifying labels.
    pub active: HashMap<Labels, Alert>,
    /// Whether the `for` clocks are restored (or need not be): until then no
    /// `ALERTS`/`ALERTS_FOR_STATE` sample is written, as in Prometheus, so that a
    /// restart does not write a fresh `activeAt` over the one to restore.
    pub restored: bool,
}

impl Alerts {
    /// The alerts that are pending or firing, sorted by labels.
    pub fn current(&self) -> Vec<&Alert> {
        let mut out: Vec<&Alert> = self
            .active
            .values()
            .filter(|a| a.state != AlertState::Inactive)
            .collect();
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }

    /// The rule's state: its most advanced alert's.
    pub fn state(&self) -> AlertState {
        self.active
            .values()
            .map(|a| a.state)
            .max()
            .unwrap_or(AlertState::Inactive)
    }

    /// The alerts to notify now, marked as sent (Prometheus's `sendAlerts`): each is
    /// valid for four evaluations or resend delays, whichever is longer, so that two
    /// failed evaluations or sends do not resolve it in Alertmanager.
    pub fn due(&mut self, ts_ms: i64, resend_delay_ms: i64, interval_ms: i64) -> Vec<Alert> {
        let mut out = Vec::new();
        for a in self.active.values_mut() {
            if a.needs_sending(ts_ms, resend_delay_ms) {
                a.last_sent_at_ms = ts_ms;
                a.valid_until_ms = ts_ms + 4 * resend_delay_ms.max(interval_ms);
                out.push(a.clone());
            }
        }
        out.sort_by(|a, b| a.labels.cmp(&b.labels));
        out
    }
}

/// An alerting rule with its templates parsed.
#[derive(Debug, Clone)]
pub struct AlertingRule {
    name: String,
    for_ms: i64,
    keep_firing_for_ms: i64,
    labels: Vec<(String, AlertTemplate)>,
    annotations: Vec<(String, AlertTemplate)>,
}

/// What an evaluation's templates can reach.
pub struct TemplateInputs<'a> {
    pub external_labels: &'a BTreeMap<String, String>,
    pub external_url: &'a str,
    pub query: QueryFn<'a>,
}

impl AlertingRule {
    pub fn new(rule: &Rule) -> AlertingRule {
        let parse = |m: &BTreeMap<String, String>| {
            m.iter()
                .map(|(k, v)| (k.clone(), AlertTemplate::parse(&rule.name, v)))
                .collect()
        };
        AlertingRule {
            name: rule.name.clone(),
            for_ms: rule.for_ms,
            keep_firing_for_ms: rule.keep_firing_for_ms,
            labels: parse(&rule.labels),
            annotations: parse(&rule.annotations),
        }
    }

    /// One evaluation at `ts_ms` over the expression's `result`: updates `alerts` and
    /// returns the `ALERTS` and `ALERTS_FOR_STATE` samples to write (none until the
    /// alerts are restored). More than `limit` active alerts (0: no limit) fail the
    /// rule and forget its alerts, as in Prometheus.
    pub fn eval(
        &self,
        alerts: &mut Alerts,
        result: Vec<(Labels, f64)>,
        ts_ms: i64,
        limit: usize,
        inputs: &TemplateInputs,
    ) -> Result<Vec<(Labels, f64)>, String> {
        let external_labels = Rc::new(inputs.external_labels.clone());
        let env = Environment {
            query: Some(inputs.query),
            external_url: inputs.external_url,
        };
        let mut fresh: HashMap<Labels, Alert> = HashMap::with_capacity(result.len());
        for (labels, value) in result {
            let data = AlertData {
                labels: Rc::new(
                    labels
                        .iter()
                        .map(|l| (l.name.to_string(), l.value.to_string()))
                        .collect(),
                ),
                external_labels: Rc::clone(&external_labels),
                external_url: inputs.external_url.to_string(),
                value,
            };
            let expand = |t: &AlertTemplate| match t.expand(&data, &env) {
                Ok(s) => s,
                Err(s) => {
                    tracing::warn!(
                        alert = self.name,
                        error = s,
                        "expanding an alert template failed"
                    );
                    s
                }
            };
            let mut b = labels.to_builder();
            b.delete("__name__");
            for (name, t) in &self.labels {
                b.set(name.as_str(), expand(t).as_str());
            }
            b.set("alertname", self.name.as_str());
            let annotations = self
                .annotations
                .iter()
                .map(|(name, t)| (name.clone(), expand(t)))
                .collect();
            let alert_labels = b.build();
            if fresh.contains_key(&alert_labels) {
                return Err(
                    "vector contains metrics with the same labelset after applying alert labels"
                        .to_string(),
                );
            }
            fresh.insert(
                alert_labels.clone(),
                Alert {
                    labels: alert_labels,
                    annotations,
                    state: AlertState::Pending,
                    value,
                    active_at_ms: ts_ms,
                    fired_at_ms: 0,
                    resolved_at_ms: 0,
                    last_sent_at_ms: 0,
                    valid_until_ms: 0,
                    keep_firing_since_ms: 0,
                },
            );
        }
        let seen: std::collections::HashSet<Labels> = fresh.keys().cloned().collect();
        for (key, a) in fresh {
            match alerts.active.get_mut(&key) {
                Some(known) if known.state != AlertState::Inactive => {
                    known.value = a.value;
                    known.annotations = a.annotations;
                }
                _ => {
                    alerts.active.insert(key, a);
                }
            }
        }
        let mut samples = Vec::new();
        let mut active_or_pending = 0;
        let mut forget = Vec::new();
        for (key, a) in alerts.active.iter_mut() {
            if !seen.contains(key) {
                let mut keep_firing = false;
                if a.state == AlertState::Firing && self.keep_firing_for_ms > 0 {
                    if a.keep_firing_since_ms == 0 {
                        a.keep_firing_since_ms = ts_ms;
                    }
                    keep_firing = ts_ms - a.keep_firing_since_ms < self.keep_firing_for_ms;
                }
                if a.state == AlertState::Pending
                    || (a.resolved_at_ms != 0 && ts_ms - a.resolved_at_ms > RESOLVED_RETENTION_MS)
                {
                    forget.push(key.clone());
                }
                if a.state != AlertState::Inactive && !keep_firing {
                    a.state = AlertState::Inactive;
                    a.resolved_at_ms = ts_ms;
                }
                if !keep_firing {
                    continue;
                }
            } else {
                a.keep_firing_since_ms = 0;
            }
            active_or_pending += 1;
            if a.state == AlertState::Pending && ts_ms - a.active_at_ms >= self.for_ms {
                a.state = AlertState::Firing;
                a.fired_at_ms = ts_ms;
            }
            if alerts.restored {
                samples.push((alert_series(&a.labels, Some(a.state)), 1.0));
                samples.push((
                    alert_series(&a.labels, None),
                    a.active_at_ms.div_euclid(1000) as f64,
                ));
            }
        }
        for key in forget {
            alerts.active.remove(&key);
        }
        if limit > 0 && active_or_pending > limit {
            alerts.active.clear();
            return Err(format!(
                "exceeded limit of {limit} with {active_or_pending} alerts"
            ));
        }
        Ok(samples)
    }
}

/// `ALERTS{…, alertstate}` for a state, `ALERTS_FOR_STATE{…}` for `None`.
fn alert_series(labels: &Labels, state: Option<AlertState>) -> Labels {
    let mut b = labels.to_builder();
    match state {
        Some(s) => {
            b.set("__name__", "ALERTS");
            b.set("alertstate", s.as_str());
        }
        None => {
            b.set("__name__", "ALERTS_FOR_STATE");
        }
    }
    b.build()
}

/// How `for` clocks are restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restore {
    /// After a restart, as Prometheus restores: the time the process was down does
    /// not count towards `for` (it could not see the condition), an alert never
    /// fires sooner than the grace period after the restart, and state older than
    /// the outage tolerance is not restored.
    AfterOutage,
    /// A node taking over as a cluster's leader: the previous leader saw the
    /// condition until it stopped, so the clocks go on from the recorded `activeAt`
    /// and an alert fires when it would have fired on the old leader. A gap longer
    /// than the grace period (the whole cluster was down) counts as an outage.
    Takeover,
}

/// `--rules.alert.for-outage-tolerance` and `--rules.alert.for-grace-period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    pub outage_tolerance_ms: i64,
    pub grace_period_ms: i64,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            outage_tolerance_ms: 3_600_000,
            grace_period_ms: 600_000,
        }
    }
}

/// Restores the `activeAt` of each of the rule's alerts from the last
/// `ALERTS_FOR_STATE` sample within the outage tolerance (Prometheus's
/// `RestoreForState`), then marks the alerts restored.
pub fn restore(
    rule: &AlertingRule,
    alerts: &mut Alerts,
    queryable: &dyn Queryable,
    now_ms: i64,
    how: Restore,
    opts: RestoreOptions,
) -> Result<(), String> {
    alerts.restored = true;
    let hold = rule.for_ms;
    if how == Restore::AfterOutage && hold < opts.grace_period_ms {
        // It would wait no longer than the grace period anyway.
        return Ok(());
    }
    if hold == 0 {
        return Ok(());
    }
    let min_t = now_ms - opts.outage_tolerance_ms;
    let querier = queryable
        .querier(min_t, now_ms)
        .map_err(|e| e.to_string())?;
    let hints = SelectHints {
        start_ms: min_t,
        end_ms: now_ms,
        series_only: false,
        sorted: false,
    };
    for a in alerts.active.values_mut() {
        let wanted = alert_series(&a.labels, None);
        let matchers: Vec<Matcher> = wanted
            .iter()
            .map(|l| Matcher::equal(l.name.as_str(), l.value.as_str()))
            .collect();
        let mut last = None;
        for series in querier
            .select(&hints, &matchers)
            .map_err(|e| e.to_string())?
        {
            let series = series.map_err(|e| e.to_string())?;
            if series.labels == wanted {
                last = series.samples.last().copied();
                break;
            }
        }
        let Some(last) = last else { continue };
        if is_stale_nan(last.v) {
            // The alert had gone away.
            continue;
        }
        // Anyone who can write can write this series: a time that is not one
        // (negative, not finite, in the future) is not restored.
        if !(last.v >= 0.0 && last.v <= (now_ms / 1000) as f64) {
            tracing::warn!(alert = %a.labels, value = last.v, "ALERTS_FOR_STATE holds no valid time; the for state is not restored");
            continue;
        }
        let recorded_active_at = (last.v as i64).saturating_mul(1000);
        let down_at = last.t.div_euclid(1000) * 1000;
        let handover = how == Restore::Takeover && now_ms - down_at <= opts.grace_period_ms;
        let remaining = hold - (down_at - recorded_active_at);
        a.active_at_ms = if handover || remaining <= 0 {
            // Handed over, or firing when it stopped (the next evaluation fires it
            // again).
            recorded_active_at
        } else if hold < opts.grace_period_ms {
            // It would wait no longer than the grace period anyway.
            continue;
        } else if remaining < opts.grace_period_ms {
            now_ms + opts.grace_period_ms - hold
        } else {
            recorded_active_at + (now_ms - down_at)
        };
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use crate::rules::file::parse;
    use crate::storage::Appendable;
    use crate::storage::memory::MemoryStorage;

    fn rule(yaml_rule: &str) -> AlertingRule {
        let text = format!("groups:\n  - name: g\n    rules:\n{yaml_rule}");
        let f = parse(&text, "r.yml").unwrap();
        AlertingRule::new(&f.groups[0].rules[0])
    }

    fn no_query(_: &str) -> Result<Vec<crate::template::prometheus::Sample>, String> {
        Err("no queries here".into())
    }

    fn eval(r: &AlertingRule, alerts: &mut Alerts, result: &[(&str, f64)], ts: i64) -> Vec<String> {
        let external = BTreeMap::from([("cluster".to_string(), "lab".to_string())]);
        let inputs = TemplateInputs {
            external_labels: &external,
            external_url: "http://odin:9090",
            query: &no_query,
        };
        let result = result
            .iter()
            .map(|(i, v)| {
                (
                    Labels::from_pairs([("__name__", "temp"), ("instance", *i)]),
                    *v,
                )
            })
            .collect();
        let mut out: Vec<String> = r
            .eval(alerts, result, ts, 0, &inputs)
            .unwrap()
            .into_iter()
            .map(|(l, v)| format!("{l} {v}"))
            .collect();
        out.sort();
        out
    }

    const HOT: &str = "      - alert: Hot\n        expr: temp > 80\n        for: 2m\n        labels: {severity: page, where: '{{ $labels.instance }}'}\n        annotations: {summary: '{{ $labels.instance }} at {{ $value }} in {{ $externalLabels.cluster }}'}\n";

    #[test]
    fn pending_then_firing_then_resolved_with_series_and_templates() {
        let r = rule(HOT);
        let mut alerts = Alerts {
            restored: true,
            ..Alerts::default()
        };
        let t0 = 1_000_000;
        let s = eval(&r, &mut alerts, &[("a", 91.0)], t0);
        assert_eq!(
            s,
            [
                r#"{__name__="ALERTS", alertname="Hot", alertstate="pending", instance="a", severity="page", where="a"} 1"#
                    .to_string(),
                format!(
                    "{{__name__=\"ALERTS_FOR_STATE\", alertname=\"Hot\", instance=\"a\", severity=\"page\", where=\"a\"}} {}",
                    t0 / 1000
                ),
            ]
        );
        let a = alerts.current()[0].clone();
        assert_eq!(a.annotations["summary"], "a at 91 in lab");
        assert_eq!(a.state, AlertState::Pending);
        // Not sent while pending.
        assert!(alerts.due(t0, 60_000, 60_000).is_empty());
        eval(&r, &mut alerts, &[("a", 92.0)], t0 + 60_000);
        assert_eq!(alerts.state(), AlertState::Pending);
        let s = eval(&r, &mut alerts, &[("a", 93.0)], t0 + 120_000);
        assert!(s[0].contains("alertstate=\"firing\""), "{s:?}");
        let a = alerts.current()[0].clone();
        assert_eq!(
            (a.state, a.fired_at_ms, a.active_at_ms),
            (AlertState::Firing, t0 + 120_000, t0)
        );
        assert_eq!(a.annotations["summary"], "a at 93 in lab");
        let sent = alerts.due(t0 + 120_000, 60_000, 60_000);
        assert_eq!(sent.len(), 1);
        assert_eq!(sent[0].valid_until_ms, t0 + 120_000 + 240_000);
        // Within the resend delay nothing is sent again.
        assert!(alerts.due(t0 + 150_000, 60_000, 60_000).is_empty());
        // Gone: resolved at once, sent as resolved, kept for 15 minutes.
        let s = eval(&r, &mut alerts, &[], t0 + 180_000);
        assert!(s.is_empty());
        assert!(alerts.current().is_empty());
        let sent = alerts.due(t0 + 180_000, 60_000, 60_000);
        assert_eq!(sent[0].resolved_at_ms, t0 + 180_000);
        eval(
            &r,
            &mut alerts,
            &[],
            t0 + 180_000 + RESOLVED_RETENTION_MS + 1,
        );
        assert!(alerts.active.is_empty());
    }

    #[test]
    fn a_pending_alert_that_goes_away_is_forgotten_and_starts_over() {
        let r = rule(HOT);
        let mut alerts = Alerts::default();
        // Not restored: no series written, the state still moves.
        assert!(eval(&r, &mut alerts, &[("a", 91.0)], 0).is_empty());
        eval(&r, &mut alerts, &[], 60_000);
        assert!(alerts.active.is_empty());
        eval(&r, &mut alerts, &[("a", 91.0)], 120_000);
        assert_eq!(alerts.current()[0].active_at_ms, 120_000);
    }

    #[test]
    fn keep_firing_for_holds_a_firing_alert() {
        let r = rule("      - alert: Flap\n        expr: x\n        keep_firing_for: 2m\n");
        let mut alerts = Alerts {
            restored: true,
            ..Alerts::default()
        };
        eval(&r, &mut alerts, &[("a", 1.0)], 0);
        assert_eq!(alerts.state(), AlertState::Firing);
        eval(&r, &mut alerts, &[], 60_000);
        assert_eq!(alerts.state(), AlertState::Firing);
        eval(&r, &mut alerts, &[], 120_000);
        assert_eq!(alerts.state(), AlertState::Firing);
        // Back before it ran out: the clock resets.
        eval(&r, &mut alerts, &[("a", 1.0)], 150_000);
        eval(&r, &mut alerts, &[], 200_000);
        eval(&r, &mut alerts, &[], 330_000);
        assert_eq!(alerts.state(), AlertState::Inactive);
    }

    #[test]
    fn same_labels_and_limits_fail_the_rule() {
        let r = rule("      - alert: Dup\n        expr: x\n        labels: {instance: same}\n");
        let mut alerts = Alerts::default();
        let inputs = TemplateInputs {
            external_labels: &BTreeMap::new(),
            external_url: "",
            query: &no_query,
        };
        let two = vec![
            (Labels::from_pairs([("instance", "a")]), 1.0),
            (Labels::from_pairs([("instance", "b")]), 1.0),
        ];
        let err = r.eval(&mut alerts, two.clone(), 0, 0, &inputs).unwrap_err();
        assert!(err.contains("same labelset"), "{err}");
        let r = rule("      - alert: Many\n        expr: x\n");
        let err = r.eval(&mut alerts, two, 0, 1, &inputs).unwrap_err();
        assert_eq!(err, "exceeded limit of 1 with 2 alerts");
        assert!(alerts.active.is_empty());
    }

    fn write_for_state(storage: &MemoryStorage, labels: &Labels, t: i64, active_at_s: f64) {
        let mut app = storage.appender();
        app.append(&alert_series(labels, None), t, active_at_s)
            .unwrap();
        app.commit().unwrap();
    }

    #[test]
    fn for_clocks_are_restored_after_an_outage_and_on_takeover() {
        let r = rule("      - alert: Slow\n        expr: x\n        for: 30m\n");
        let storage = MemoryStorage::new();
        let labels = Labels::from_pairs([("alertname", "Slow"), ("instance", "a")]);
        let h = 3_600_000;
        // Pending since 10:00; the process stopped at 10:10 and is back at 10:20.
        let (active_at, down, now) = (10 * h, 10 * h + 600_000, 10 * h + 1_200_000);
        write_for_state(&storage, &labels, down, (active_at / 1000) as f64);
        let fresh = |now: i64| {
            let mut alerts = Alerts::default();
            eval(&r, &mut alerts, &[("a", 1.0)], now);
            alerts
        };
        let opts = RestoreOptions::default();
        let mut alerts = fresh(now);
        restore(&r, &mut alerts, &storage, now, Restore::AfterOutage, opts).unwrap();
        assert!(alerts.restored);
        // The ten minutes down do not count: it fires at 10:40, not 10:30.
        assert_eq!(alerts.current()[0].active_at_ms, active_at + 600_000);
        // Taking over from a leader, the clock goes on as it was.
        let mut alerts = fresh(now);
        restore(&r, &mut alerts, &storage, now, Restore::Takeover, opts).unwrap();
        assert_eq!(alerts.current()[0].active_at_ms, active_at);
        // Almost due when it stopped: it waits the grace period, no less.
        let late = 10 * h + 1_750_000;
        let storage = MemoryStorage::new();
        write_for_state(&storage, &labels, late, (active_at / 1000) as f64);
        let mut alerts = fresh(late + 60_000);
        restore(
            &r,
            &mut alerts,
            &storage,
            late + 60_000,
            Restore::AfterOutage,
            opts,
        )
        .unwrap();
        assert_eq!(
            alerts.current()[0].active_at_ms,
            late + 60_000 + opts.grace_period_ms - 1_800_000
        );
        // Older than the outage tolerance: not restored.
        let mut alerts = fresh(down + 2 * h);
        restore(
            &r,
            &mut alerts,
            &storage,
            down + 2 * h,
            Restore::AfterOutage,
            opts,
        )
        .unwrap();
        assert_eq!(alerts.current()[0].active_at_ms, down + 2 * h);
        // A rule whose `for` is under the grace period is not restored.
        let quick = rule("      - alert: Slow\n        expr: x\n        for: 5m\n");
        let mut alerts = fresh(now);
        restore(
            &quick,
            &mut alerts,
            &storage,
            now,
            Restore::AfterOutage,
            opts,
        )
        .unwrap();
        assert_eq!(alerts.current()[0].active_at_ms, now);
    }
}
