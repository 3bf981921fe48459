//! Metric families as exporters expose them: what the built-in collectors produce and
//! what the text writer serialises. The scrape path does not build these (its parsers
//! hand out borrowed entries instead); they are for in-process sources, whose volume is
//! small (a node has a few thousand series).

/// A family's type, as the `# TYPE` line names it (OpenMetrics adds the last three).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
    GaugeHistogram,
    Info,
    StateSet,
}

impl MetricType {
    /// The name `/api/v1/metadata` reports (Prometheus's `textparse.MetricType`).
    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "unknown",
            MetricType::GaugeHistogram => "gaugehistogram",
            MetricType::Info => "info",
            MetricType::StateSet => "stateset",
        }
    }
}

/// One family: its metadata and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricFamily {
    /// The family name (for a counter in the text format, the series name: exporters
    /// such as node_exporter put `_total` into the family name).
    pub name: String,
    pub kind: MetricType,
    pub help: String,
    /// Empty when the family has none.
    pub unit: String,
    pub samples: Vec<FamilySample>,
}

/// One sample of a family.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilySample {
    /// The series name: the family name, or it with a suffix (`_bucket`, `_sum`,
    /// `_count`, `_total`, …).
    pub name: String,
    /// Label pairs other than `__name__`, in the order they are written.
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl MetricFamily {
    pub fn new(name: impl Into<String>, kind: MetricType, help: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            kind,
            help: help.into(),
            unit: String::new(),
            samples: Vec::new(),
        }
    }

    /// Adds a sample named like the family.
    pub fn push(&mut self, labels: Vec<(String, String)>, value: f64) -> &mut Self {
        let name = self.name.clone();
        self.samples.push(FamilySample {
            name,
            labels,
            value,
        });
        self
    }

    /// Adds a sample with a suffixed name (`_bucket`, `_sum`, `_count`).
    pub fn push_suffixed(
        &mut self,
        suffix: &str,
        labels: Vec<(String, String)>,
        value: f64,
    ) -> &mut Self {
        let name = format!("{}{suffix}", self.name);
        self.samples.push(FamilySample {
            name,
            labels,
            value,
        });
        self
    }
}
