//! The rule engine's self-metrics, by Prometheus's names (dashboards and the
//! rule-evaluation alerts people keep read them): `rule_group` is `FILE;GROUP`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GroupLabel {
    pub rule_group: String,
}

#[derive(Clone, Default)]
pub struct RuleMetrics {
    pub evaluations: Family<GroupLabel, Counter>,
    pub evaluation_failures: Family<GroupLabel, Counter>,
    pub iterations_missed: Family<GroupLabel, Counter>,
    pub last_duration_seconds: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    pub interval_seconds: Family<GroupLabel, Gauge<f64, AtomicU64>>,
    pub rules: Family<GroupLabel, Gauge>,
}

impl RuleMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("prometheus");
        r.register(
            "rule_evaluations",
            "The total number of rule evaluations",
            m.evaluations.clone(),
        );
        r.register(
            "rule_evaluation_failures",
            "The total number of rule evaluation failures",
            m.evaluation_failures.clone(),
        );
        r.register(
            "rule_group_iterations_missed",
            "The total number of rule group evaluations missed due to slow rule group evaluation",
            m.iterations_missed.clone(),
        );
        r.register(
            "rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation",
            m.last_duration_seconds.clone(),
        );
        r.register(
            "rule_group_interval_seconds",
            "The interval of a rule group",
            m.interval_seconds.clone(),
        );
        r.register("rule_group_rules", "The number of rules", m.rules.clone());
        m
    }
}
