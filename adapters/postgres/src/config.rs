//! [`PostgresConfig`]: everything the adapter needs to connect, typed and
//! documented; built from a `postgres://` URL or deserialized.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use orchestrix::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::schema::SchemaName;

/// How the connection is encrypted (libpq's `sslmode` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain otherwise; the certificate is
    /// not verified (as libpq). Without the `tls` feature: plain.
    #[default]
    Prefer,
    /// TLS or no connection; the certificate is not verified (as libpq's
    /// `require`): protects against eavesdropping, not against an active
    /// man in the middle. Needs the `tls` feature.
    Require,
    /// TLS with the server certificate verified against `ca_file` (or the
    /// Mozilla roots) and the host name checked. Needs the `tls` feature.
    VerifyFull,
}

impl TlsMode {
    fn parse(s: &str) -> Result<Self> {
        match s {
            "disable" => Ok(Self::Disable),
            "prefer" | "allow" => Ok(Self::Prefer),
            "require" => Ok(Self::Require),
            "verify-full" | "verify-ca" => Ok(Self::VerifyFull),
            other => Err(Error::invalid(
                "sslmode",
                format!("`{other}` is not one of disable, prefer, require, verify-full"),
            )),
        }
    }
}

/// Bounded retries of transient failures (idempotent reads, and appends that
/// failed before their commit was sent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Attempts in all, the first included (1 disables retries).
    #[serde(default = "defaults::max_attempts")]
    pub max_attempts: u32,
    /// First backoff in milliseconds; doubled after each failure, with full jitter.
    #[serde(default = "defaults::initial_backoff_ms")]
    pub initial_backoff_ms: u64,
    /// Largest backoff in milliseconds.
    #[serde(default = "defaults::max_backoff_ms")]
    pub max_backoff_ms: u64,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: defaults::max_attempts(),
            initial_backoff_ms: defaults::initial_backoff_ms(),
            max_backoff_ms: defaults::max_backoff_ms(),
        }
    }
}

/// Settings of a [`PostgresStore`](crate::PostgresStore).
///
/// ```
/// use orchestrix_postgres::{PostgresConfig, TlsMode};
/// let c = PostgresConfig::from_url(
///     "postgres://app:secret@db.internal:5432/events?schema=tenant_a&pool_size=32&statement_timeout_ms=5000&sslmode=require",
/// )?;
/// assert_eq!(c.schema, "tenant_a");
/// assert_eq!(c.pool_size, 32);
/// assert_eq!(c.statement_timeout_ms, Some(5000));
/// assert_eq!(c.tls, TlsMode::Require);
/// assert_eq!(c.url, "postgres://app:secret@db.internal:5432/events");
/// assert!(!format!("{c:?}").contains("secret"));
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresConfig {
    /// Connection URL, `postgres://user:password@host:port/database`; query
    /// parameters that tokio-postgres understands (`application_name`,
    /// `options`, ...) are passed through.
    pub url: String,
    /// Schema holding the store's tables, one per tenant or test; created on
    /// migration. Must match `^[a-z_][a-z0-9_]{0,62}$`.
    #[serde(default = "defaults::schema")]
    pub schema: String,
    /// Most pooled connections (the LISTEN connection is extra).
    #[serde(default = "defaults::pool_size")]
    pub pool_size: usize,
    /// Server-side `statement_timeout` in milliseconds for every statement
    /// of the adapter; `None` keeps the server's setting.
    #[serde(default = "defaults::statement_timeout_ms")]
    pub statement_timeout_ms: Option<u64>,
    /// Timeout in milliseconds for opening one connection.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Timeout in milliseconds for getting a connection from the pool
    /// (waiting for a free one, or opening a new one).
    #[serde(default = "defaults::acquire_timeout_ms")]
    pub acquire_timeout_ms: u64,
    /// Encryption of the connection.
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file with the root certificates that `verify-full` trusts
    /// (instead of the Mozilla roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Retries of transient failures.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Wake subscribers with LISTEN/NOTIFY (one extra connection); without
    /// it they poll.
    #[serde(default = "defaults::listen")]
    pub listen: bool,
    /// Announce appends with NOTIFY so that LISTENers here and in other
    /// processes wake at once: from a background task right after each
    /// commit (off the commit path), or inside the caller's transaction for
    /// [`PostgresStore::append_in`](crate::PostgresStore::append_in).
    /// Without it, other processes' subscribers poll.
    #[serde(default = "defaults::notify")]
    pub notify: bool,
    /// How long, in milliseconds, a read of the all-stream (or of the head)
    /// waits while committed events are held back by an older transaction
    /// that is still running, before it returns what is readable; so that a
    /// reader sees its own commits. 0: never wait.
    #[serde(default = "defaults::visibility_wait_ms")]
    pub visibility_wait_ms: u64,
    /// Run the crate's migrations when connecting.
    #[serde(default = "defaults::migrate")]
    pub migrate: bool,
    /// Write coalescing for stores built with
    /// [`PostgresStore::store`](crate::PostgresStore::store) (and so by
    /// `orchestrix_backends::open_store`): concurrent appends share one
    /// statement and one commit. A lone append goes straight through (no
    /// wait); appends that arrive while batches are in flight are gathered
    /// into the next one. URL: `coalesce=on|off`.
    #[serde(default = "defaults::coalesce")]
    pub coalesce: bool,
    /// Most appends in one coalesced batch. URL: `max_batch`.
    #[serde(default = "defaults::max_batch")]
    pub max_batch: usize,
    /// Coalesced batches committed at the same time. URL: `max_in_flight`.
    #[serde(default = "defaults::max_in_flight")]
    pub max_in_flight: usize,
}

mod defaults {
    pub(super) fn schema() -> String {
        "orchestrix".to_owned()
    }
    pub(super) fn pool_size() -> usize {
        16
    }
    #[allow(clippy::unnecessary_wraps)]
    pub(super) fn statement_timeout_ms() -> Option<u64> {
        Some(30_000)
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        5_000
    }
    pub(super) fn acquire_timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn listen() -> bool {
        true
    }
    pub(super) fn notify() -> bool {
        true
    }
    pub(super) fn visibility_wait_ms() -> u64 {
        500
    }
    pub(super) fn migrate() -> bool {
        true
    }
    pub(super) fn coalesce() -> bool {
        true
    }
    pub(super) fn max_batch() -> usize {
        256
    }
    pub(super) fn max_in_flight() -> usize {
        2
    }
    pub(super) fn max_attempts() -> u32 {
        5
    }
    pub(super) fn initial_backoff_ms() -> u64 {
        10
    }
    pub(super) fn max_backoff_ms() -> u64 {
        1_000
    }
}

impl fmt::Debug for PostgresConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("url", &orchestrix::url::redact(&self.url))
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("statement_timeout_ms", &self.statement_timeout_ms)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("acquire_timeout_ms", &self.acquire_timeout_ms)
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("retry", &self.retry)
            .field("listen", &self.listen)
            .field("notify", &self.notify)
            .field("visibility_wait_ms", &self.visibility_wait_ms)
            .field("migrate", &self.migrate)
            .field("coalesce", &self.coalesce)
            .field("max_batch", &self.max_batch)
            .field("max_in_flight", &self.max_in_flight)
            .finish()
    }
}

/// URL query parameters that this crate consumes (the rest go to tokio-postgres).
const OWN_PARAMS: &[&str] = &[
    "schema",
    "pool_size",
    "statement_timeout_ms",
    "connect_timeout_ms",
    "acquire_timeout_ms",
    "sslmode",
    "sslrootcert",
    "retry_max_attempts",
    "retry_initial_backoff_ms",
    "retry_max_backoff_ms",
    "listen",
    "notify",
    "visibility_wait_ms",
    "migrate",
    "coalesce",
    "max_batch",
    "max_in_flight",
];

impl PostgresConfig {
    /// Defaults for everything but the URL (used as given).
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            schema: defaults::schema(),
            pool_size: defaults::pool_size(),
            statement_timeout_ms: defaults::statement_timeout_ms(),
            connect_timeout_ms: defaults::connect_timeout_ms(),
            acquire_timeout_ms: defaults::acquire_timeout_ms(),
            tls: TlsMode::default(),
            ca_file: None,
            retry: RetryConfig::default(),
            listen: defaults::listen(),
            notify: defaults::notify(),
            visibility_wait_ms: defaults::visibility_wait_ms(),
            migrate: defaults::migrate(),
            coalesce: defaults::coalesce(),
            max_batch: defaults::max_batch(),
            max_in_flight: defaults::max_in_flight(),
        }
    }

    /// Parses a `postgres://` (or `postgresql://`) URL. These query
    /// parameters set the matching fields and are removed from
    /// [`url`](Self::url): `schema`, `pool_size`, `statement_timeout_ms`
    /// (`0` for none), `connect_timeout_ms`, `acquire_timeout_ms`, `sslmode`
    /// (`disable`, `prefer`, `require`, `verify-full`), `sslrootcert`
    /// (`ca_file`), `retry_max_attempts`, `retry_initial_backoff_ms`,
    /// `retry_max_backoff_ms`, `listen`, `notify`, `visibility_wait_ms`,
    /// `migrate`, `coalesce` (`on`/`off`), `max_batch`, `max_in_flight`.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed URL, an unknown or malformed
    /// parameter, or an invalid schema name.
    pub fn from_url(raw: &str) -> Result<Self> {
        let redacted = orchestrix::url::redact(raw);
        let invalid = |reason: String| Error::invalid(format!("postgres URL `{redacted}`"), reason);
        let mut url = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            return Err(invalid(format!(
                "scheme `{}` is not postgres:// or postgresql://",
                url.scheme()
            )));
        }
        let mut config = Self::new(String::new());
        let mut kept = Vec::new();
        for (key, value) in url.query_pairs() {
            let (key, value) = (key.into_owned(), value.into_owned());
            if !OWN_PARAMS.contains(&key.as_str()) {
                kept.push((key, value));
                continue;
            }
            let number = |v: &str| -> Result<u64> {
                v.parse::<u64>()
                    .map_err(|_| invalid(format!("`{key}={v}` is not a non-negative integer")))
            };
            match key.as_str() {
                "schema" => config.schema = value,
                "pool_size" => {
                    config.pool_size = usize::try_from(number(&value)?)
                        .map_err(|_| invalid(format!("`pool_size={value}` is too large")))?;
                }
                "statement_timeout_ms" => {
                    config.statement_timeout_ms = Some(number(&value)?).filter(|v| *v > 0)
                }
                "connect_timeout_ms" => config.connect_timeout_ms = number(&value)?,
                "acquire_timeout_ms" => config.acquire_timeout_ms = number(&value)?,
                "sslmode" => config.tls = TlsMode::parse(&value)?,
                "sslrootcert" => config.ca_file = Some(PathBuf::from(value)),
                "retry_max_attempts" => {
                    config.retry.max_attempts = u32::try_from(number(&value)?).map_err(|_| {
                        invalid(format!("`retry_max_attempts={value}` is too large"))
                    })?;
                }
                "retry_initial_backoff_ms" => config.retry.initial_backoff_ms = number(&value)?,
                "retry_max_backoff_ms" => config.retry.max_backoff_ms = number(&value)?,
                "visibility_wait_ms" => config.visibility_wait_ms = number(&value)?,
                "max_batch" | "max_in_flight" => {
                    let n = usize::try_from(number(&value)?)
                        .map_err(|_| invalid(format!("`{key}={value}` is too large")))?;
                    if key == "max_batch" {
                        config.max_batch = n;
                    } else {
                        config.max_in_flight = n;
                    }
                }
                "listen" | "notify" | "migrate" | "coalesce" => {
                    let flag = match value.as_str() {
                        "true" | "1" | "on" => true,
                        "false" | "0" | "off" => false,
                        other => {
                            return Err(invalid(format!("`{key}={other}` is not true or false")));
                        }
                    };
                    match key.as_str() {
                        "listen" => config.listen = flag,
                        "notify" => config.notify = flag,
                        "coalesce" => config.coalesce = flag,
                        _ => config.migrate = flag,
                    }
                }
                _ => unreachable!("every own parameter is matched"),
            }
        }
        if kept.is_empty() {
            url.set_query(None);
        } else {
            // Percent-encoded (not form-encoded): tokio-postgres reads `+` as a plus.
            let query: Vec<String> = kept
                .iter()
                .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
                .collect();
            url.set_query(Some(&query.join("&")));
        }
        config.url = url.to_string();
        config.validate()?;
        Ok(config)
    }

    /// Reads `ORCHESTRIX_POSTGRES_URL`, falling back to `default_url`.
    ///
    /// # Errors
    /// As [`from_url`](Self::from_url).
    pub fn from_env_or(default_url: &str) -> Result<Self> {
        let url =
            std::env::var("ORCHESTRIX_POSTGRES_URL").unwrap_or_else(|_| default_url.to_owned());
        Self::from_url(&url)
    }

    /// The same config with another schema.
    #[must_use]
    pub fn with_schema(mut self, schema: impl Into<String>) -> Self {
        self.schema = schema.into();
        self
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the bad field.
    pub fn validate(&self) -> Result<()> {
        SchemaName::new(&self.schema)?;
        if self.pool_size == 0 {
            return Err(Error::invalid("postgres pool_size", "must be at least 1"));
        }
        if self.max_batch == 0 || self.max_in_flight == 0 {
            return Err(Error::invalid(
                "postgres max_batch and max_in_flight",
                "must be at least 1",
            ));
        }
        if self.retry.max_attempts == 0 {
            return Err(Error::invalid(
                "postgres retry.max_attempts",
                "must be at least 1",
            ));
        }
        self.pg_config()?;
        Ok(())
    }

    /// The schema name, validated.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a name that is not a plain identifier.
    pub fn schema_name(&self) -> Result<SchemaName> {
        SchemaName::new(&self.schema)
    }

    /// The driver configuration: the URL plus timeouts, TLS mode and the
    /// statement timeout as a startup option (no extra round trip).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a URL that tokio-postgres rejects.
    pub fn pg_config(&self) -> Result<tokio_postgres::Config> {
        let mut pg = tokio_postgres::Config::from_str(&self.url).map_err(|e| {
            Error::invalid(
                format!("postgres URL `{}`", orchestrix::url::redact(&self.url)),
                e.to_string(),
            )
        })?;
        pg.connect_timeout(Duration::from_millis(self.connect_timeout_ms.max(1)));
        pg.ssl_mode(match self.tls {
            TlsMode::Disable => tokio_postgres::config::SslMode::Disable,
            TlsMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            TlsMode::Require | TlsMode::VerifyFull => tokio_postgres::config::SslMode::Require,
        });
        if pg.get_application_name().is_none() {
            pg.application_name("orchestrix");
        }
        if let Some(ms) = self.statement_timeout_ms {
            let options = match pg.get_options() {
                Some(existing) => format!("{existing} -c statement_timeout={ms}"),
                None => format!("-c statement_timeout={ms}"),
            };
            pg.options(&options);
        }
        Ok(pg)
    }

    /// An example with every field set, as documentation and for the
    /// round-trip test.
    #[must_use]
    pub fn example() -> Self {
        Self {
            url: "postgres://orchestrix@127.0.0.1:5432/orchestrix".to_owned(),
            schema: "tenant_a".to_owned(),
            pool_size: 16,
            statement_timeout_ms: Some(30_000),
            connect_timeout_ms: 5_000,
            acquire_timeout_ms: 30_000,
            tls: TlsMode::Prefer,
            ca_file: None,
            retry: RetryConfig::default(),
            listen: true,
            notify: true,
            visibility_wait_ms: 500,
            migrate: true,
            coalesce: true,
            max_batch: 256,
            max_in_flight: 2,
        }
    }
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_round_trips_through_json() {
        let example = PostgresConfig::example();
        let text = serde_json::to_string_pretty(&example).unwrap();
        let back: PostgresConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, example);
        back.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected_and_defaults_fill_in() {
        let err = serde_json::from_str::<PostgresConfig>(r#"{"url":"postgres://h/db","pool":3}"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `pool`"), "{err}");
        let c: PostgresConfig = serde_json::from_str(r#"{"url":"postgres://h/db"}"#).unwrap();
        assert_eq!(c, PostgresConfig::new("postgres://h/db"));
        let err = serde_json::from_str::<PostgresConfig>(
            r#"{"url":"postgres://h/db","retry":{"tries":1}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown field `tries`"), "{err}");
    }

    #[test]
    fn url_parameters_set_fields_and_the_rest_pass_through() {
        let c = PostgresConfig::from_url(
            "postgresql://u@h:5433/db?application_name=svc&schema=s_1&connect_timeout_ms=250&statement_timeout_ms=0&listen=false&retry_max_attempts=2&sslmode=verify-full&sslrootcert=/ca.pem",
        )
        .unwrap();
        assert_eq!(c.url, "postgresql://u@h:5433/db?application_name=svc");
        assert_eq!(c.schema, "s_1");
        assert_eq!(c.connect_timeout_ms, 250);
        assert_eq!(c.statement_timeout_ms, None);
        assert!(!c.listen);
        assert_eq!(c.retry.max_attempts, 2);
        assert_eq!(c.tls, TlsMode::VerifyFull);
        assert_eq!(c.ca_file.as_deref(), Some(std::path::Path::new("/ca.pem")));
        let pg = c.pg_config().unwrap();
        assert_eq!(pg.get_application_name(), Some("svc"));
        assert_eq!(pg.get_connect_timeout(), Some(&Duration::from_millis(250)));
    }

    #[test]
    fn coalescing_is_on_by_default_and_set_from_the_url() {
        let c = PostgresConfig::from_url("postgres://u@h/db").unwrap();
        assert!(c.coalesce);
        assert_eq!((c.max_batch, c.max_in_flight), (256, 2));
        let c =
            PostgresConfig::from_url("postgres://u@h/db?coalesce=off&max_batch=32&max_in_flight=4")
                .unwrap();
        assert!(!c.coalesce);
        assert_eq!((c.max_batch, c.max_in_flight), (32, 4));
        assert_eq!(c.url, "postgres://u@h/db");
    }

    #[test]
    fn statement_timeout_becomes_a_startup_option() {
        let c = PostgresConfig::from_url(
            "postgres://u@h/db?options=-c%20search_path%3Dx&statement_timeout_ms=1500",
        )
        .unwrap();
        let pg = c.pg_config().unwrap();
        assert_eq!(
            pg.get_options(),
            Some("-c search_path=x -c statement_timeout=1500")
        );
    }

    #[test]
    fn bad_input_is_rejected_with_a_reason() {
        for (url, needle) in [
            ("mysql://h/db", "scheme"),
            ("postgres://h/db?schema=Bad-Name", "schema"),
            ("postgres://h/db?pool_size=x", "pool_size"),
            ("postgres://h/db?pool_size=0", "pool_size"),
            ("postgres://h/db?sslmode=maybe", "sslmode"),
            ("postgres://h/db?listen=perhaps", "listen"),
            ("postgres://h/db?coalesce=maybe", "coalesce"),
            ("postgres://h/db?max_batch=0", "max_batch"),
            ("postgres://h/db?max_in_flight=-1", "max_in_flight"),
            ("postgres://h/db?no_such_param=1", "no_such_param"),
        ] {
            let err = PostgresConfig::from_url(url).unwrap_err().to_string();
            assert!(err.contains(needle), "{url}: {err}");
        }
    }
}
