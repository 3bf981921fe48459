//! The scrape manager's own metrics (`odin_scrape_*` on `/metrics`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

// prometheus-client writes label values as given: a job name (from the
// configuration) is escaped before it becomes one.
use crate::exposition::write::escape_label_value;

type Labels = Vec<(String, String)>;

#[derive(Clone, Default)]
pub struct ScrapeMetrics {
    /// Scrapes by job and result (`success`, `failure`).
    scrapes: Family<Labels, Counter>,
    /// Samples appended from scrapes (after metric relabeling), by job.
    samples: Family<Labels, Counter>,
    /// Targets by job and state (`active`, `dropped`).
    targets: Family<Labels, Gauge>,
    /// Where a scrape loop or a job's pool that panicked is counted
    /// (`odin_task_failures_total{task}`, registered by the application).
    pub tasks: crate::supervise::TaskMetrics,
}

impl ScrapeMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("odin_scrape");
        r.register("scrapes", "Scrapes by job and result", m.scrapes.clone());
        r.register(
            "samples_appended",
            "Samples appended from scrapes, after metric relabeling",
            m.samples.clone(),
        );
        r.register("targets", "Targets by job and state", m.targets.clone());
        m
    }

    pub fn scraped(&self, job: &str, ok: bool, samples: u64) {
        let job = escape_label_value(job);
        let result = if ok { "success" } else { "failure" };
        self.scrapes
            .get_or_create(&vec![
                ("job".into(), job.clone()),
                ("result".into(), result.into()),
            ])
            .inc();
        if samples > 0 {
            self.samples
                .get_or_create(&vec![("job".into(), job)])
                .inc_by(samples);
        }
    }

    pub fn set_targets(&self, job: &str, active: usize, dropped: usize) {
        let job = escape_label_value(job);
        for (state, n) in [("active", active), ("dropped", dropped)] {
            self.targets
                .get_or_create(&vec![
                    ("job".into(), job.clone()),
                    ("state".into(), state.into()),
                ])
                .set(n as i64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job name with a quote or a newline cannot break `/metrics` into lines of
    /// its own.
    #[test]
    fn job_names_are_escaped_in_the_exposition() {
        let mut registry = Registry::default();
        let m = ScrapeMetrics::new(&mut registry);
        m.scraped("a\"} 1\ninjected 2\n", true, 3);
        m.set_targets("a\"} 1\ninjected 2\n", 1, 0);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(!text.lines().any(|l| l.starts_with("injected")), "{text}");
        assert!(text.contains(r#"job="a\"} 1\ninjected 2\n""#), "{text}");
    }
}
