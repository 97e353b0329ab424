//! The Prometheus recorder behind `/metrics`.
//!
//! The core records through the `metrics` facade; this installs
//! `metrics-exporter-prometheus` as the process's recorder and renders the
//! text exposition format on each scrape. It was chosen over
//! `prometheus-client` because the core then needs only the light facade (no
//! registry handed through every layer), every crate of the process (bus
//! adapters, applications) can record through the same facade, and the
//! exporter renders real histograms with the buckets of
//! [`MetricsConfig::histogram_buckets`].

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::config::MetricsConfig;
use crate::error::{Error, Result};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the Prometheus recorder as the process's `metrics` recorder
/// (once; later calls return the same handle, whatever their buckets) and
/// describes every Orchestrix metric.
///
/// # Errors
/// [`Error::Telemetry`] when another `metrics` recorder is installed.
pub fn install(config: &MetricsConfig) -> Result<PrometheusHandle> {
    if let Some(handle) = HANDLE.get() {
        return Ok(handle.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Suffix("_seconds".to_owned()),
            &config.histogram_buckets,
        )
        .map_err(|e| Error::Telemetry {
            what: "the Prometheus recorder",
            reason: e.to_string(),
        })?
        .install_recorder()
        .map_err(|e| Error::Telemetry {
            what: "the Prometheus recorder",
            reason: e.to_string(),
        })?;
    let handle = HANDLE.get_or_init(|| handle).clone();
    orchestrix::telemetry::metrics::describe();
    Ok(handle)
}
