//! The service's own figures in `/metrics`.

use autonoma_common::metrics::Metrics;
use std::fmt::Write;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// Why records were not stored.
#[derive(Debug, Clone, Copy, Hash, PartialEq, Eq)]
pub enum Reason {
    /// The request failed validation (422) or carried too many frames (413).
    Invalid,
    /// The ingest queue was full (503).
    QueueFull,
    /// The service was shutting down (503).
    ShuttingDown,
    /// Acknowledged, but the database refused the record.
    Database,
    /// Acknowledged, but the database stayed unreachable while the service shut down.
    Unwritten,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Invalid => "invalid",
            Reason::QueueFull => "queue_full",
            Reason::ShuttingDown => "shutting_down",
            Reason::Database => "database",
            Reason::Unwritten => "unwritten",
        }
    }
}

impl EncodeLabelValue for Reason {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: Reason,
}

#[derive(Clone, Default)]
pub struct LogMetrics {
    ingested: Counter,
    written: Counter,
    rejected: Family<ReasonLabel, Counter>,
    queue_depth: Gauge,
}

impl LogMetrics {
    pub fn register(metrics: &Metrics) -> Self {
        let this = LogMetrics::default();
        metrics.register(
            "log_records_ingested",
            "Log records accepted by POST /log (answered 202)",
            this.ingested.clone(),
        );
        metrics.register(
            "log_records_written",
            "Log records written to the database",
            this.written.clone(),
        );
        metrics.register(
            "log_records_rejected",
            "Log records not stored, by reason",
            this.rejected.clone(),
        );
        metrics.register(
            "log_ingest_queue_depth",
            "Log records accepted and not yet written",
            this.queue_depth.clone(),
        );
        this
    }

    pub fn accepted(&self, count: usize) {
        self.ingested.inc_by(count as u64);
        self.queue_depth.inc_by(count as i64);
    }

    pub fn written(&self, count: usize) {
        self.written.inc_by(count as u64);
    }

    /// Records that left the queue, written or not.
    pub fn dequeued(&self, count: usize) {
        self.queue_depth.dec_by(count as i64);
    }

    pub fn rejected(&self, reason: Reason, count: usize) {
        self.rejected
            .get_or_create(&ReasonLabel { reason })
            .inc_by(count as u64);
    }
}
