//! The shipper's self-metrics (`odin_shipper_*`).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Default)]
pub struct ShipperMetrics {
    /// Blocks uploaded (meta.json written last).
    pub uploads: Counter,
    /// Upload attempts that failed (each is retried after a back-off).
    pub upload_failures: Counter,
    /// Local blocks not in the bucket yet.
    pub blocks_pending: Gauge,
    /// Log segments uploaded (meta.json written last).
    pub log_segment_uploads: Counter,
    /// Local log segments not in the bucket yet.
    pub log_segments_pending: Gauge,
    /// When the last block landed (Unix seconds).
    pub last_success_timestamp_seconds: Gauge<f64, AtomicU64>,
}

impl ShipperMetrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("odin_shipper");
        r.register(
            "uploads",
            "Blocks uploaded to object storage",
            m.uploads.clone(),
        );
        r.register(
            "upload_failures",
            "Block uploads that failed and will be retried",
            m.upload_failures.clone(),
        );
        r.register(
            "blocks_pending",
            "Local blocks not uploaded yet",
            m.blocks_pending.clone(),
        );
        r.register(
            "log_segment_uploads",
            "Log segments uploaded to object storage",
            m.log_segment_uploads.clone(),
        );
        r.register(
            "log_segments_pending",
            "Local log segments not uploaded yet",
            m.log_segments_pending.clone(),
        );
        r.register(
            "last_success_timestamp_seconds",
            "Time the last block upload finished, Unix seconds",
            m.last_success_timestamp_seconds.clone(),
        );
        m
    }
}
