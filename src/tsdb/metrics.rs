//! The TSDB's self-metrics (`odin_tsdb_*`), registered once at construction.

use std::sync::{Arc, OnceLock};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::storage::{AppendSummary, RejectReason};

#[derive(Clone, Default)]
pub struct TsdbMetrics {
    pub head_series: Gauge,
    pub head_min_time: Gauge,
    pub head_max_time: Gauge,
    pub samples_appended: Counter,
    pub rejected_samples: Family<Vec<(String, String)>, Counter>,
    pub commits: Counter,
    pub commit_failures: Counter,
    pub blocks_loaded: Gauge,
    pub blocks_bytes: Gauge,
    pub compactions: Counter,
    pub compactions_failed: Counter,
    pub head_truncations: Counter,
    /// Head images written (see `head::image`).
    pub head_images: Counter,
    /// Head images that could not be written, or found damaged at start-up.
    pub head_image_failures: Counter,
    /// Microseconds the WAL writer was stopped for the last head image's copy.
    pub head_image_pause_us: Gauge,
    /// Log lines stored, and refused by reason (see `logs::store`).
    pub log_lines_appended: Counter,
    pub log_lines_rejected: Family<Vec<(String, String)>, Counter>,
    /// Log lines in memory (open and sealed windows not yet written out).
    pub log_lines_in_memory: Gauge,
    /// Sealed log segments on disk.
    pub log_segments: Gauge,
    pub retention_deleted_blocks: Counter,
    /// Blocks retention wanted to delete but kept because they have not shipped.
    pub retention_blocked_blocks: Gauge,
    /// Their size in bytes.
    pub retention_blocked_bytes: Gauge,
    pub wal_replay_records: Counter,
    pub wal_corruptions: Counter,
    /// Bytes of the WAL skipped as damaged (torn tails included).
    pub wal_corrupt_bytes: Counter,
    /// WAL segments missing from the numbering.
    pub wal_segments_missing: Counter,
    /// WAL records with a valid checksum that could not be decoded.
    pub wal_records_undecodable: Counter,
    /// Block directories moved to `corrupted/` at start-up.
    pub blocks_quarantined: Counter,
    /// Block chunks that could not be read during a query and were skipped.
    pub corrupt_chunks: Counter,
    /// Reads the live WAL writer's counters; set once the database is open.
    pub(crate) wal: WalStatsSource,
}

/// A reading of the WAL writer's counters for `/metrics`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct WalReading {
    pub records: u64,
    pub bytes: u64,
    pub fsyncs: u64,
    pub fsync_seconds: f64,
    pub commit_errors: u64,
    pub segment: u64,
}

type WalReader = Box<dyn Fn() -> WalReading + Send + Sync>;

/// Where the collector finds the WAL once it exists.
#[derive(Clone, Default)]
pub(crate) struct WalStatsSource(Arc<OnceLock<WalReader>>);

impl WalStatsSource {
    pub(crate) fn set(&self, reader: WalReader) {
        let _ = self.0.set(reader);
    }
}

impl std::fmt::Debug for WalStatsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WalStatsSource")
    }
}

impl Collector for WalStatsSource {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(read) = self.0.get() else {
            return Ok(());
        };
        let r = read();
        let counters: [(&str, &str, f64); 5] = [
            (
                "odin_tsdb_wal_records_written",
                "Records written to the WAL.",
                r.records as f64,
            ),
            (
                "odin_tsdb_wal_bytes_written",
                "Bytes written to the WAL.",
                r.bytes as f64,
            ),
            (
                "odin_tsdb_wal_fsyncs",
                "WAL fsyncs (one per group commit).",
                r.fsyncs as f64,
            ),
            (
                "odin_tsdb_wal_fsync_duration_seconds",
                "Time spent in WAL fsyncs.",
                r.fsync_seconds,
            ),
            (
                "odin_tsdb_wal_write_failures",
                "Group commits whose write or fsync failed.",
                r.commit_errors as f64,
            ),
        ];
        for (name, help, v) in counters {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, MetricType::Counter)?)?;
        }
        let g = prometheus_client::metrics::gauge::ConstGauge::new(r.segment as i64);
        g.encode(encoder.encode_descriptor(
            "odin_tsdb_wal_segment_current",
            "The WAL segment being written.",
            None,
            MetricType::Gauge,
        )?)?;
        Ok(())
    }
}

impl TsdbMetrics {
    /// Creates the metrics and registers them under `odin_tsdb_`.
    pub fn new(registry: &mut Registry) -> Self {
        let m = Self::default();
        let r = registry.sub_registry_with_prefix("odin_tsdb");
        r.register("head_series", "Series in the head", m.head_series.clone());
        r.register(
            "head_min_time",
            "Oldest sample time in the head, ms",
            m.head_min_time.clone(),
        );
        r.register(
            "head_max_time",
            "Newest sample time in the head, ms",
            m.head_max_time.clone(),
        );
        r.register(
            "head_samples_appended",
            "Samples stored in the head",
            m.samples_appended.clone(),
        );
        r.register(
            "rejected_samples",
            "Samples refused, by reason",
            m.rejected_samples.clone(),
        );
        r.register("commits", "Batches committed", m.commits.clone());
        r.register(
            "commit_failures",
            "Batches whose commit failed",
            m.commit_failures.clone(),
        );
        r.register(
            "blocks_loaded",
            "Blocks on local disk",
            m.blocks_loaded.clone(),
        );
        r.register(
            "storage_blocks_bytes",
            "Bytes of the local blocks",
            m.blocks_bytes.clone(),
        );
        r.register(
            "compactions",
            "Blocks written by compaction",
            m.compactions.clone(),
        );
        r.register(
            "compactions_failed",
            "Compactions that failed",
            m.compactions_failed.clone(),
        );
        r.register(
            "head_truncations",
            "Times the head was cut into a block",
            m.head_truncations.clone(),
        );
        r.register("head_images", "Head images written", m.head_images.clone());
        r.register(
            "head_image_failures",
            "Head images that could not be written, or were found damaged at start-up (the start fell back to an older image or the whole WAL)",
            m.head_image_failures.clone(),
        );
        r.register(
            "head_image_pause_microseconds",
            "How long the WAL writer stopped for the last head image's in-memory copy",
            m.head_image_pause_us.clone(),
        );
        r.register(
            "log_lines_appended",
            "Log lines stored",
            m.log_lines_appended.clone(),
        );
        r.register(
            "log_lines_rejected",
            "Log lines refused when applied, by reason (out_of_order: too far behind their stream; out_of_bounds: their window is sealed; duplicate: a repeat of their stream's last line)",
            m.log_lines_rejected.clone(),
        );
        r.register(
            "log_lines_in_memory",
            "Log lines in memory, not yet written out as segments",
            m.log_lines_in_memory.clone(),
        );
        r.register(
            "log_segments",
            "Sealed log segments on disk",
            m.log_segments.clone(),
        );
        r.register(
            "retention_deleted_blocks",
            "Blocks deleted by retention",
            m.retention_deleted_blocks.clone(),
        );
        r.register(
            "retention_blocked_by_unshipped_blocks",
            "Blocks beyond retention kept because they have not shipped to object storage yet",
            m.retention_blocked_blocks.clone(),
        );
        r.register(
            "retention_blocked_by_unshipped_bytes",
            "Bytes of the blocks beyond retention kept because they have not shipped yet",
            m.retention_blocked_bytes.clone(),
        );
        r.register(
            "wal_replay_records",
            "WAL records replayed at start-up",
            m.wal_replay_records.clone(),
        );
        r.register(
            "wal_corruptions",
            "Damaged places found in the WAL (damaged ranges and gaps in the segment numbering); only the damaged records are lost",
            m.wal_corruptions.clone(),
        );
        r.register(
            "wal_corrupt_bytes",
            "WAL bytes skipped as damaged at start-up (kept in wal/corrupted/ unless all zeros)",
            m.wal_corrupt_bytes.clone(),
        );
        r.register(
            "wal_segments_missing",
            "WAL segments missing from the numbering at start-up",
            m.wal_segments_missing.clone(),
        );
        r.register(
            "wal_records_undecodable",
            "WAL records with a valid checksum that could not be decoded at start-up",
            m.wal_records_undecodable.clone(),
        );
        r.register(
            "blocks_quarantined",
            "Block directories moved to corrupted/ at start-up (unreadable, implausible meta.json, or no meta.json)",
            m.blocks_quarantined.clone(),
        );
        r.register(
            "corrupt_chunks",
            "Block chunks that could not be read during a query and were skipped",
            m.corrupt_chunks.clone(),
        );
        registry.register_collector(Box::new(m.wal.clone()));
        m
    }

    /// What applying a log entry did.
    pub fn observe_log_push(&self, s: &AppendSummary) {
        self.log_lines_appended.inc_by(s.accepted);
        for (reason, n) in [
            ("out_of_order", s.out_of_order),
            ("out_of_bounds", s.out_of_bounds),
            ("duplicate", s.unchanged),
        ] {
            if n > 0 {
                self.log_lines_rejected
                    .get_or_create(&vec![("reason".to_string(), reason.to_string())])
                    .inc_by(n);
            }
        }
    }

    pub fn observe_commit(&self, s: &AppendSummary) {
        self.commits.inc();
        self.samples_appended.inc_by(s.accepted);
        for reason in RejectReason::ALL {
            let n = s.count(reason);
            if n > 0 {
                self.rejected_samples
                    .get_or_create(&vec![("reason".to_string(), reason.as_str().to_string())])
                    .inc_by(n);
            }
        }
    }
}
