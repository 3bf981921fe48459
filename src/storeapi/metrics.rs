//! The StoreAPI's self-metrics (`odin_storeapi_*`).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;

type MethodCode = Vec<(String, String)>;

/// Counted per call and per series, never per sample.
#[derive(Clone, Default)]
pub struct StoreApiMetrics {
    requests: Family<MethodCode, Counter>,
    series: Counter,
    chunk_bytes: Counter,
}

impl StoreApiMetrics {
    /// Registers the metrics; [`StoreApiMetrics::default`] makes unregistered ones
    /// (for tests).
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("odin_storeapi");
        r.register(
            "requests",
            "StoreAPI calls by method and gRPC status code (a Series call by how its stream ended)",
            m.requests.clone(),
        );
        r.register(
            "series_sent",
            "Series frames sent by StoreAPI Series calls",
            m.series.clone(),
        );
        r.register(
            "chunk_bytes_sent",
            "Bytes of encoded chunks sent by StoreAPI Series calls",
            m.chunk_bytes.clone(),
        );
        m
    }

    pub fn request(&self, method: &str, code: tonic::Code) {
        self.requests
            .get_or_create(&vec![
                ("method".into(), method.to_string()),
                ("code".into(), format!("{code:?}")),
            ])
            .inc();
    }

    pub fn sent(&self, series: u64, chunk_bytes: u64) {
        self.series.inc_by(series);
        self.chunk_bytes.inc_by(chunk_bytes);
    }

    #[cfg(test)]
    pub fn requests(&self, method: &str, code: tonic::Code) -> u64 {
        self.requests
            .get_or_create(&vec![
                ("method".into(), method.to_string()),
                ("code".into(), format!("{code:?}")),
            ])
            .get()
    }
}
