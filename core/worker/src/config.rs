//! [`WorkerConfig`]: from a TOML file, then `ORCHESTRIX_*` environment
//! variables, then code.
//!
//! Every field has a default, so an empty file (or none) is a valid
//! configuration. `worker.example.toml` beside this crate lists every field
//! with its default and is checked by a test.
//!
//! | variable | field |
//! |---|---|
//! | `ORCHESTRIX_CONFIG` | the file to read (see [`WorkerConfig::load`]) |
//! | `ORCHESTRIX_SERVICE_NAME` | [`service_name`](WorkerConfig::service_name) |
//! | `ORCHESTRIX_STORE_URL` | [`store.url`](StoreConfig::url) |
//! | `ORCHESTRIX_BUS_URL` | [`bus.url`](BusConfig::url) |
//! | `ORCHESTRIX_BUS_RELAY` | [`bus.relay`](BusConfig::relay) |
//! | `ORCHESTRIX_HTTP_LISTEN` | [`http.listen`](HttpConfig::listen) |
//! | `ORCHESTRIX_SHUTDOWN_GRACE_PERIOD_MS` | [`shutdown.grace_period_ms`](ShutdownConfig::grace_period_ms) |
//! | `ORCHESTRIX_READINESS_STORE_TIMEOUT_MS` | [`readiness.store_timeout_ms`](ReadinessConfig::store_timeout_ms) |
//! | `ORCHESTRIX_LOG_FORMAT` | [`log.format`](LogConfig::format) |
//! | `ORCHESTRIX_LOG_FILTER` (else `RUST_LOG`) | [`log.filter`](LogConfig::filter) |
//! | `ORCHESTRIX_METRICS_SAMPLE_TIMEOUT_MS` | [`metrics.sample_timeout_ms`](MetricsConfig::sample_timeout_ms) |
//!
//! Traces are configured by the standard OpenTelemetry variables
//! (`OTEL_SERVICE_NAME`, `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_TRACES_SAMPLER`,
//! ...), see [`crate::telemetry`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The environment variable that names the configuration file.
pub const CONFIG_ENV: &str = "ORCHESTRIX_CONFIG";

/// Everything a worker is configured by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct WorkerConfig {
    /// The service's name in logs, and in traces unless `OTEL_SERVICE_NAME`
    /// is set. Default `orchestrix-worker`.
    pub service_name: String,
    /// The event store.
    pub store: StoreConfig,
    /// The bus the consumers read from (none: the store's all-stream).
    pub bus: BusConfig,
    /// The health, readiness and metrics endpoint.
    pub http: HttpConfig,
    /// Graceful shutdown.
    pub shutdown: ShutdownConfig,
    /// Readiness checks.
    pub readiness: ReadinessConfig,
    /// Logs.
    pub log: LogConfig,
    /// Metrics.
    pub metrics: MetricsConfig,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            service_name: "orchestrix-worker".to_owned(),
            store: StoreConfig::default(),
            bus: BusConfig::default(),
            http: HttpConfig::default(),
            shutdown: ShutdownConfig::default(),
            readiness: ReadinessConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

/// The event store the worker's application runs on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct StoreConfig {
    /// The store's URL: `postgres://user@host:5432/db?schema=bank` (shared by
    /// every process; feature `postgres`), `sqlite://PATH` (one machine) or
    /// `memory://` (tests). Default `sqlite://orchestrix.db`. See
    /// [`open_store`](crate::open_store).
    pub url: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://orchestrix.db".to_owned(),
        }
    }
}

/// Where the worker's projections and sagas consume from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct BusConfig {
    /// The bus's URL: `nats://host:4222?stream=S&prefix=P&partitions=N`
    /// (feature `nats`): every registered handler and projection runs as a
    /// partitioned consumer of the bus, one consumer group per handler, and
    /// background tasks (saga timers) and transactional projections run
    /// in-process. Empty (the default), `memory://` or a store URL: the
    /// embedded runtime reads the store's all-stream. See
    /// `orchestrix_backends::start_on_bus`.
    pub url: String,
    /// Also relay the store's events to the bus from this worker (otherwise
    /// another process relays). Default `false`.
    pub relay: bool,
}

impl BusConfig {
    /// The bus URL, if one is set.
    #[must_use]
    pub fn url(&self) -> Option<&str> {
        Some(self.url.trim()).filter(|u| !u.is_empty())
    }
}

/// The HTTP endpoint: `/healthz`, `/readyz`, `/metrics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct HttpConfig {
    /// The address to listen on; port 0 picks a free port. Default
    /// `0.0.0.0:9090`.
    pub listen: SocketAddr,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
        }
    }
}

/// What happens on SIGTERM or SIGINT.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ShutdownConfig {
    /// How long the worker may take to stop fetching, finish the events in
    /// flight and commit its checkpoints, in milliseconds. Past it the worker
    /// stops at once (what was in flight is delivered again after a restart)
    /// and exits with an error. Keep it below the orchestrator's kill timeout
    /// (Kubernetes `terminationGracePeriodSeconds`). Default 25000.
    pub grace_period_ms: u64,
}

impl Default for ShutdownConfig {
    fn default() -> Self {
        Self {
            grace_period_ms: 25_000,
        }
    }
}

impl ShutdownConfig {
    /// The grace period.
    #[must_use]
    pub fn grace_period(&self) -> Duration {
        Duration::from_millis(self.grace_period_ms)
    }
}

/// How `/readyz` decides.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct ReadinessConfig {
    /// How long the store may take to answer a readiness probe, in
    /// milliseconds. Default 2000.
    pub store_timeout_ms: u64,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self {
            store_timeout_ms: 2_000,
        }
    }
}

impl ReadinessConfig {
    /// The store timeout.
    #[must_use]
    pub fn store_timeout(&self) -> Duration {
        Duration::from_millis(self.store_timeout_ms)
    }
}

/// The log format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One JSON object per line, with `trace_id` and `span_id` (for log
    /// collectors).
    #[default]
    Json,
    /// Human-readable lines.
    Text,
}

/// Logs, written to standard error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct LogConfig {
    /// `json` or `text`. Default `json`.
    pub format: LogFormat,
    /// Which spans and events to log, in `RUST_LOG` syntax. Default `info`.
    pub filter: String,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            format: LogFormat::Json,
            filter: "info".to_owned(),
        }
    }
}

/// Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
#[non_exhaustive]
pub struct MetricsConfig {
    /// How long sampling the gauges that need the store (consumer and relay
    /// lag, saga instances) may take per scrape, in milliseconds; a source
    /// that takes longer keeps its last values. Default 2000.
    pub sample_timeout_ms: u64,
    /// Upper bounds of the buckets of every `*_seconds` histogram, in seconds,
    /// ascending.
    pub histogram_buckets: Vec<f64>,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self {
            sample_timeout_ms: 2_000,
            histogram_buckets: vec![
                0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ],
        }
    }
}

impl MetricsConfig {
    /// The sample timeout.
    #[must_use]
    pub fn sample_timeout(&self) -> Duration {
        Duration::from_millis(self.sample_timeout_ms)
    }
}

impl WorkerConfig {
    /// Parses a TOML document.
    ///
    /// # Errors
    /// [`Error::Config`] naming `origin` for bad TOML, an unknown field or an
    /// invalid value.
    pub fn from_toml(text: &str, origin: &str) -> Result<Self> {
        let config: Self = toml::from_str(text).map_err(|e| Error::Config {
            origin: origin.to_owned(),
            reason: e.to_string(),
        })?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads a TOML file.
    ///
    /// # Errors
    /// [`Error::ReadConfig`] or as [`from_toml`](Self::from_toml).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(&text, &format!("`{}`", path.display()))
    }

    /// The TOML form of this configuration.
    ///
    /// # Errors
    /// [`Error::Config`] when a value has no TOML form.
    pub fn to_toml(&self) -> Result<String> {
        toml::to_string(self).map_err(|e| Error::Config {
            origin: "the configuration".into(),
            reason: e.to_string(),
        })
    }

    /// The configuration of a worker process: the file `path` (else the one
    /// `ORCHESTRIX_CONFIG` names, else the defaults), then the `ORCHESTRIX_*`
    /// variables of the process environment.
    ///
    /// # Errors
    /// As [`from_file`](Self::from_file) and [`apply_env`](Self::apply_env).
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let path: Option<PathBuf> = path
            .map(Path::to_owned)
            .or_else(|| std::env::var_os(CONFIG_ENV).map(PathBuf::from));
        let config = match path {
            Some(p) => Self::from_file(&p)?,
            None => Self::default(),
        };
        config.apply_env(std::env::vars())
    }

    /// Overrides fields with the `ORCHESTRIX_*` variables among `vars` (see
    /// the module docs); other variables are ignored.
    ///
    /// # Errors
    /// [`Error::Config`] naming the variable whose value is invalid.
    pub fn apply_env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Result<Self> {
        let mut rust_log = None;
        let mut log_filter = None;
        for (name, value) in vars {
            let bad = |reason: String| Error::Config {
                origin: format!("`{name}`"),
                reason,
            };
            let ms = |value: &str| {
                value
                    .trim()
                    .parse::<u64>()
                    .map_err(|e| bad(format!("`{value}` is not a number of milliseconds: {e}")))
            };
            match name.as_str() {
                "ORCHESTRIX_SERVICE_NAME" => self.service_name = value,
                "ORCHESTRIX_STORE_URL" => self.store.url = value,
                "ORCHESTRIX_BUS_URL" => self.bus.url = value,
                "ORCHESTRIX_BUS_RELAY" => {
                    self.bus.relay = match value.trim().to_ascii_lowercase().as_str() {
                        "1" | "true" | "yes" => true,
                        "0" | "false" | "no" | "" => false,
                        other => return Err(bad(format!("`{other}` is not `true` or `false`"))),
                    };
                }
                "ORCHESTRIX_HTTP_LISTEN" => {
                    self.http.listen = value
                        .trim()
                        .parse()
                        .map_err(|e| bad(format!("`{value}` is not a socket address: {e}")))?;
                }
                "ORCHESTRIX_SHUTDOWN_GRACE_PERIOD_MS" => {
                    self.shutdown.grace_period_ms = ms(&value)?
                }
                "ORCHESTRIX_READINESS_STORE_TIMEOUT_MS" => {
                    self.readiness.store_timeout_ms = ms(&value)?
                }
                "ORCHESTRIX_METRICS_SAMPLE_TIMEOUT_MS" => {
                    self.metrics.sample_timeout_ms = ms(&value)?
                }
                "ORCHESTRIX_LOG_FORMAT" => {
                    self.log.format = match value.trim().to_ascii_lowercase().as_str() {
                        "json" => LogFormat::Json,
                        "text" => LogFormat::Text,
                        other => {
                            return Err(bad(format!("`{other}` is neither `json` nor `text`")));
                        }
                    };
                }
                "ORCHESTRIX_LOG_FILTER" => log_filter = Some(value),
                "RUST_LOG" => rust_log = Some(value),
                _ => {}
            }
        }
        if let Some(filter) = log_filter.or(rust_log) {
            self.log.filter = filter;
        }
        self.validate("the environment")?;
        Ok(self)
    }

    fn validate(&self, origin: &str) -> Result<()> {
        let bad = |reason: &str| {
            Err(Error::Config {
                origin: origin.to_owned(),
                reason: reason.to_owned(),
            })
        };
        if self.service_name.trim().is_empty() {
            return bad("`service_name` is empty");
        }
        if self.store.url.trim().is_empty() {
            return bad("`store.url` is empty");
        }
        let buckets = &self.metrics.histogram_buckets;
        if buckets.is_empty()
            || buckets.iter().any(|b| !b.is_finite() || *b <= 0.0)
            || buckets.windows(2).any(|w| w[0] >= w[1])
        {
            return bad("`metrics.histogram_buckets` must be positive and strictly ascending");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = include_str!("../worker.example.toml");

    #[test]
    fn the_example_lists_the_defaults_and_round_trips() {
        let example = WorkerConfig::from_toml(EXAMPLE, "worker.example.toml").unwrap();
        assert_eq!(
            example,
            WorkerConfig::default(),
            "the example shows every default"
        );
        let again = WorkerConfig::from_toml(&example.to_toml().unwrap(), "round trip").unwrap();
        assert_eq!(again, example);
        // Every field of the serialized form appears in the example.
        let full: toml::Table = toml::from_str(&example.to_toml().unwrap()).unwrap();
        let documented: toml::Table = toml::from_str(EXAMPLE).unwrap();
        for (section, value) in &full {
            let Some(table) = value.as_table() else {
                assert!(
                    documented.contains_key(section),
                    "`{section}` is missing from the example"
                );
                continue;
            };
            for key in table.keys() {
                assert!(
                    documented[section].get(key).is_some(),
                    "`{section}.{key}` is missing from the example"
                );
            }
        }
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_with_their_origin() {
        let err = WorkerConfig::from_toml("[http]\nlisten = \"0.0.0.0:1\"\nport = 3\n", "`w.toml`")
            .unwrap_err();
        assert!(
            err.to_string().contains("`w.toml`") && err.to_string().contains("port"),
            "{err}"
        );
        let err = WorkerConfig::from_toml("[metrics]\nhistogram_buckets = [1.0, 0.5]\n", "x")
            .unwrap_err();
        assert!(err.to_string().contains("ascending"), "{err}");
        let err = WorkerConfig::default()
            .apply_env([(
                "ORCHESTRIX_SHUTDOWN_GRACE_PERIOD_MS".to_owned(),
                "soon".to_owned(),
            )])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("ORCHESTRIX_SHUTDOWN_GRACE_PERIOD_MS"),
            "{err}"
        );
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let file =
            WorkerConfig::from_toml("service_name = \"bank\"\n[log]\nfilter = \"debug\"\n", "x")
                .unwrap();
        let vars = [
            ("ORCHESTRIX_STORE_URL", "postgres://db/bank"),
            ("ORCHESTRIX_HTTP_LISTEN", "127.0.0.1:0"),
            ("ORCHESTRIX_SHUTDOWN_GRACE_PERIOD_MS", "5000"),
            ("ORCHESTRIX_LOG_FORMAT", "TEXT"),
            ("RUST_LOG", "warn"),
            ("HOME", "/root"),
        ];
        let config = file
            .apply_env(vars.map(|(k, v)| (k.to_owned(), v.to_owned())))
            .unwrap();
        assert_eq!(config.service_name, "bank");
        assert_eq!(config.store.url, "postgres://db/bank");
        assert_eq!(config.http.listen.port(), 0);
        assert_eq!(config.shutdown.grace_period(), Duration::from_secs(5));
        assert_eq!(config.log.format, LogFormat::Text);
        assert_eq!(
            config.log.filter, "warn",
            "RUST_LOG when ORCHESTRIX_LOG_FILTER is not set"
        );
        let config = config
            .apply_env([
                ("ORCHESTRIX_LOG_FILTER".to_owned(), "trace".to_owned()),
                ("RUST_LOG".to_owned(), "warn".to_owned()),
            ])
            .unwrap();
        assert_eq!(config.log.filter, "trace");
    }
}
