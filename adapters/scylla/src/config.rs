//! [`ScyllaConfig`]: everything the adapter needs to connect, typed and
//! documented; built from a `scylla://` URL or deserialized.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::ScyllaError;
use crate::schema::KeyspaceName;

/// How the connection is encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TlsMode {
    /// Plain TCP.
    #[default]
    Disable,
    /// TLS with the server certificate verified against `ca_file` (or the
    /// Mozilla roots) and the host name checked. Needs the `tls` feature.
    Verify,
    /// TLS without verifying the certificate: protects against
    /// eavesdropping, not against an active man in the middle. Needs the
    /// `tls` feature.
    NoVerify,
}

/// The consistency of every read and write (lightweight transactions use
/// the matching serial consistency: `LOCAL_SERIAL` for the `local_*`
/// levels, `SERIAL` otherwise).
///
/// The all-stream's gap safety needs reads that see every acknowledged
/// write, so reads and writes must overlap: `quorum`, `local_quorum` or
/// `all` on a cluster; `one` is only safe with a replication factor of 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsistencyLevel {
    /// `ONE`.
    One,
    /// `LOCAL_ONE`.
    LocalOne,
    /// `QUORUM`.
    Quorum,
    /// `LOCAL_QUORUM`.
    #[default]
    LocalQuorum,
    /// `ALL`.
    All,
}

impl ConsistencyLevel {
    fn parse(s: &str) -> Option<Self> {
        Some(match s.to_ascii_lowercase().as_str() {
            "one" => Self::One,
            "local_one" => Self::LocalOne,
            "quorum" => Self::Quorum,
            "local_quorum" => Self::LocalQuorum,
            "all" => Self::All,
            _ => return None,
        })
    }

    pub(crate) fn driver(self) -> scylla::statement::Consistency {
        use scylla::statement::Consistency as C;
        match self {
            Self::One => C::One,
            Self::LocalOne => C::LocalOne,
            Self::Quorum => C::Quorum,
            Self::LocalQuorum => C::LocalQuorum,
            Self::All => C::All,
        }
    }

    pub(crate) fn serial(self) -> scylla::statement::SerialConsistency {
        use scylla::statement::SerialConsistency as S;
        match self {
            Self::LocalOne | Self::LocalQuorum => S::LocalSerial,
            _ => S::Serial,
        }
    }
}

/// Bounded retries of transient failures of idempotent operations.
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

/// Settings of a [`ScyllaStore`](crate::ScyllaStore).
///
/// ```
/// use orchestrix_scylla::{ConsistencyLevel, ScyllaConfig};
/// let c = ScyllaConfig::from_url(
///     "scylla://10.0.0.1:9042,10.0.0.2:9042/bank?replication_factor=3&consistency=quorum&user=app&password=secret",
/// )?;
/// assert_eq!(c.nodes, ["10.0.0.1:9042", "10.0.0.2:9042"]);
/// assert_eq!(c.keyspace, "bank");
/// assert_eq!(c.replication_factor, 3);
/// assert_eq!(c.consistency, ConsistencyLevel::Quorum);
/// assert_eq!(c.user.as_deref(), Some("app"));
/// assert!(!format!("{c:?}").contains("secret"));
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScyllaConfig {
    /// Contact points, `host:port` each; the driver discovers the rest of
    /// the cluster from them.
    pub nodes: Vec<String>,
    /// Keyspace holding the store's tables, one per tenant or test; created
    /// if missing. Must match `^[a-z_][a-z0-9_]{0,47}$`.
    #[serde(default = "defaults::keyspace")]
    pub keyspace: String,
    /// Replication factor of the keyspace when this crate creates it
    /// (`SimpleStrategy`); an existing keyspace is left as it is.
    #[serde(default = "defaults::replication_factor")]
    pub replication_factor: u32,
    /// Consistency of reads and writes (see [`ConsistencyLevel`]).
    #[serde(default)]
    pub consistency: ConsistencyLevel,
    /// User name for password authentication.
    #[serde(default)]
    pub user: Option<String>,
    /// Password for password authentication (never printed by `Debug`).
    #[serde(default)]
    pub password: Option<String>,
    /// Encryption of the connections.
    #[serde(default)]
    pub tls: TlsMode,
    /// PEM file with the root certificates that `tls = verify` trusts
    /// (instead of the Mozilla roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout in milliseconds for opening one connection.
    #[serde(default = "defaults::connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Client-side timeout in milliseconds of one request.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// How long, in milliseconds, a claimed position range may stay
    /// unwritten before readers treat its writer as gone: they fence the
    /// claim on its stream (so a late writer can no longer commit it) and
    /// mark it skipped, or copy its events if it did commit. Shorter means
    /// a crashed writer stalls the all-stream for less time; a live writer
    /// that is fenced simply claims again.
    #[serde(default = "defaults::claim_lease_ms")]
    pub claim_lease_ms: u64,
    /// Retries of transient failures.
    #[serde(default)]
    pub retry: RetryConfig,
    /// Create the keyspace and the tables when connecting.
    #[serde(default = "defaults::migrate")]
    pub migrate: bool,
}

mod defaults {
    pub(super) fn keyspace() -> String {
        "orchestrix".to_owned()
    }
    pub(super) fn replication_factor() -> u32 {
        1
    }
    pub(super) fn connect_timeout_ms() -> u64 {
        5_000
    }
    pub(super) fn request_timeout_ms() -> u64 {
        30_000
    }
    pub(super) fn claim_lease_ms() -> u64 {
        5_000
    }
    pub(super) fn migrate() -> bool {
        true
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

impl fmt::Debug for ScyllaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScyllaConfig")
            .field("nodes", &self.nodes)
            .field("keyspace", &self.keyspace)
            .field("replication_factor", &self.replication_factor)
            .field("consistency", &self.consistency)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("tls", &self.tls)
            .field("ca_file", &self.ca_file)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("request_timeout_ms", &self.request_timeout_ms)
            .field("claim_lease_ms", &self.claim_lease_ms)
            .field("retry", &self.retry)
            .field("migrate", &self.migrate)
            .finish()
    }
}

/// The URL query parameters, all of them; anything else is rejected.
pub const URL_PARAMETERS: &[&str] = &[
    "replication_factor",
    "consistency",
    "user",
    "password",
    "tls",
    "ca_file",
    "connect_timeout_ms",
    "request_timeout_ms",
    "claim_lease_ms",
    "retry_max_attempts",
    "retry_initial_backoff_ms",
    "retry_max_backoff_ms",
    "migrate",
];

/// The port used when a node has none.
pub const DEFAULT_PORT: u16 = 9042;

impl ScyllaConfig {
    /// Defaults for everything but the contact points.
    #[must_use]
    pub fn new<I: IntoIterator<Item = S>, S: Into<String>>(nodes: I) -> Self {
        Self {
            nodes: nodes.into_iter().map(Into::into).collect(),
            keyspace: defaults::keyspace(),
            replication_factor: defaults::replication_factor(),
            consistency: ConsistencyLevel::default(),
            user: None,
            password: None,
            tls: TlsMode::default(),
            ca_file: None,
            connect_timeout_ms: defaults::connect_timeout_ms(),
            request_timeout_ms: defaults::request_timeout_ms(),
            claim_lease_ms: defaults::claim_lease_ms(),
            retry: RetryConfig::default(),
            migrate: defaults::migrate(),
        }
    }

    /// Parses `scylla://[user:password@]host[:port][,host2[:port]]/[KEYSPACE][?param=value&...]`
    /// into a config, reporting a typed [`ScyllaError`]. Parameters:
    /// `replication_factor`, `consistency` (`one`, `local_one`, `quorum`,
    /// `local_quorum`, `all`), `user`, `password`, `tls` (`disable`,
    /// `verify`, `no-verify`; also `true`/`false`), `ca_file`,
    /// `connect_timeout_ms`, `request_timeout_ms`, `claim_lease_ms`,
    /// `retry_max_attempts`, `retry_initial_backoff_ms`,
    /// `retry_max_backoff_ms`, `migrate`. Any other key is an error.
    ///
    /// ```
    /// use orchestrix_scylla::{ConsistencyLevel, ScyllaConfig, ScyllaError};
    /// let c = ScyllaConfig::parse_url("scylla://db1,db2:9043/ks?consistency=quorum&claim_lease_ms=2000")?;
    /// assert_eq!(c.nodes, ["db1:9042", "db2:9043"]);
    /// assert_eq!((c.consistency, c.claim_lease_ms), (ConsistencyLevel::Quorum, 2000));
    /// assert!(ScyllaConfig::parse_url("scylla://db/ks?replication_factor=x").is_err());
    /// # Ok::<(), ScyllaError>(())
    /// ```
    ///
    /// # Errors
    /// [`ScyllaError::InvalidUrl`], [`ScyllaError::UnknownParameter`],
    /// [`ScyllaError::InvalidParameter`] or [`ScyllaError::InvalidConfig`].
    pub fn parse_url(raw: &str) -> Result<Self, ScyllaError> {
        let redacted = orchestrix::url::redact(raw);
        let invalid = |reason: &str| ScyllaError::InvalidUrl {
            url: redacted.clone(),
            reason: reason.to_owned(),
        };
        let rest = raw
            .strip_prefix("scylla://")
            .ok_or_else(|| invalid("expected `scylla://`"))?;
        let (authority_and_path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = authority_and_path
            .split_once('/')
            .unwrap_or((authority_and_path, ""));
        let (userinfo, hosts) = match authority.rsplit_once('@') {
            Some((u, h)) => (Some(u), h),
            None => (None, authority),
        };
        let mut config = Self::new(Vec::<String>::new());
        if let Some(userinfo) = userinfo {
            let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
            config.user = Some(decode(user).map_err(|e| invalid(&e))?);
            if !password.is_empty() {
                config.password = Some(decode(password).map_err(|e| invalid(&e))?);
            }
        }
        for host in hosts.split(',') {
            if host.is_empty() {
                return Err(invalid("needs at least one host"));
            }
            let with_port = if host.starts_with('[') {
                if host.contains("]:") {
                    host.to_owned()
                } else {
                    format!("{host}:{DEFAULT_PORT}")
                }
            } else {
                match host.rsplit_once(':') {
                    Some((_, port)) => {
                        port.parse::<u16>()
                            .map_err(|_| invalid(&format!("`{host}` has a bad port")))?;
                        host.to_owned()
                    }
                    None => format!("{host}:{DEFAULT_PORT}"),
                }
            };
            config.nodes.push(with_port);
        }
        let path = path.trim_end_matches('/');
        if !path.is_empty() {
            config.keyspace = decode(path).map_err(|e| invalid(&e))?;
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = decode(key).map_err(|e| invalid(&e))?;
            let value = decode(value).map_err(|e| invalid(&e))?;
            config.set(&key, value)?;
        }
        config.check()?;
        Ok(config)
    }

    /// [`parse_url`](Self::parse_url), with the error as an
    /// [`orchestrix::Error::InvalidInput`].
    ///
    /// # Errors
    /// As [`parse_url`](Self::parse_url).
    pub fn from_url(raw: &str) -> orchestrix::Result<Self> {
        Self::parse_url(raw).map_err(Into::into)
    }

    fn set(&mut self, key: &str, value: String) -> Result<(), ScyllaError> {
        let bad = |reason: &str| ScyllaError::InvalidParameter {
            key: key.to_owned(),
            value: if key == "password" {
                "<redacted>".to_owned()
            } else {
                value.clone()
            },
            reason: reason.to_owned(),
        };
        let number = || {
            value
                .parse::<u64>()
                .map_err(|_| bad("not a non-negative integer"))
        };
        match key {
            "replication_factor" => {
                self.replication_factor = u32::try_from(number()?).map_err(|_| bad("too large"))?;
            }
            "consistency" => {
                self.consistency = ConsistencyLevel::parse(&value)
                    .ok_or_else(|| bad("not one of one, local_one, quorum, local_quorum, all"))?;
            }
            "user" => self.user = Some(value),
            "password" => self.password = Some(value),
            "tls" => {
                self.tls = match value.as_str() {
                    "disable" | "false" | "0" | "off" => TlsMode::Disable,
                    "verify" | "true" | "1" | "on" => TlsMode::Verify,
                    "no-verify" | "no_verify" => TlsMode::NoVerify,
                    _ => return Err(bad("not one of disable, verify, no-verify")),
                };
            }
            "ca_file" => self.ca_file = Some(PathBuf::from(value)),
            "connect_timeout_ms" => self.connect_timeout_ms = number()?,
            "request_timeout_ms" => self.request_timeout_ms = number()?,
            "claim_lease_ms" => self.claim_lease_ms = number()?,
            "retry_max_attempts" => {
                self.retry.max_attempts = u32::try_from(number()?).map_err(|_| bad("too large"))?;
            }
            "retry_initial_backoff_ms" => self.retry.initial_backoff_ms = number()?,
            "retry_max_backoff_ms" => self.retry.max_backoff_ms = number()?,
            "migrate" => {
                self.migrate = match value.as_str() {
                    "true" | "1" | "on" => true,
                    "false" | "0" | "off" => false,
                    _ => return Err(bad("not true or false")),
                };
            }
            _ => {
                return Err(ScyllaError::UnknownParameter {
                    key: key.to_owned(),
                    known: URL_PARAMETERS.join(", "),
                });
            }
        }
        Ok(())
    }

    fn check(&self) -> Result<(), ScyllaError> {
        let invalid = |field: &'static str, reason: &str| ScyllaError::InvalidConfig {
            field,
            reason: reason.to_owned(),
        };
        KeyspaceName::new(&self.keyspace).map_err(|e| invalid("keyspace", &e.to_string()))?;
        if self.nodes.is_empty() {
            return Err(invalid("nodes", "needs at least one contact point"));
        }
        if self.replication_factor == 0 {
            return Err(invalid("replication_factor", "must be at least 1"));
        }
        if self.retry.max_attempts == 0 {
            return Err(invalid("retry.max_attempts", "must be at least 1"));
        }
        if self.claim_lease_ms == 0 {
            return Err(invalid("claim_lease_ms", "must be at least 1"));
        }
        if self.password.is_some() && self.user.is_none() {
            return Err(invalid("password", "needs a user"));
        }
        if self.tls != TlsMode::Disable && !cfg!(feature = "tls") {
            return Err(invalid(
                "tls",
                "TLS needs the `tls` feature of orchestrix-scylla",
            ));
        }
        Ok(())
    }

    /// Checks every field.
    ///
    /// # Errors
    /// [`orchestrix::Error::InvalidInput`] naming the bad field.
    pub fn validate(&self) -> orchestrix::Result<()> {
        self.check().map_err(Into::into)
    }

    /// The same config with another keyspace.
    #[must_use]
    pub fn with_keyspace(mut self, keyspace: impl Into<String>) -> Self {
        self.keyspace = keyspace.into();
        self
    }

    /// An example with every field set, as documentation and for the
    /// round-trip test.
    #[must_use]
    pub fn example() -> Self {
        Self {
            nodes: vec!["10.0.0.1:9042".to_owned(), "10.0.0.2:9042".to_owned()],
            keyspace: "tenant_a".to_owned(),
            replication_factor: 3,
            consistency: ConsistencyLevel::LocalQuorum,
            user: Some("orchestrix".to_owned()),
            password: Some("secret".to_owned()),
            tls: TlsMode::Disable,
            ca_file: None,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 30_000,
            claim_lease_ms: 5_000,
            retry: RetryConfig::default(),
            migrate: true,
        }
    }
}

fn decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = s
                    .get(i + 1..i + 3)
                    .ok_or_else(|| format!("bad percent escape in `{s}`"))?;
                let b = u8::from_str_radix(hex, 16)
                    .map_err(|_| format!("bad percent escape in `{s}`"))?;
                out.push(b);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_round_trips_through_json() {
        let example = ScyllaConfig::example();
        let text = serde_json::to_string_pretty(&example).unwrap();
        let back: ScyllaConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back, example);
        back.validate().unwrap();
    }

    #[test]
    fn unknown_fields_are_rejected_and_defaults_fill_in() {
        let err =
            serde_json::from_str::<ScyllaConfig>(r#"{"nodes":["h:9042"],"pool":3}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field `pool`"), "{err}");
        let c: ScyllaConfig = serde_json::from_str(r#"{"nodes":["h:9042"]}"#).unwrap();
        assert_eq!(c, ScyllaConfig::new(["h:9042"]));
    }

    #[test]
    fn url_sets_every_field() {
        let c = ScyllaConfig::parse_url(
            "scylla://u%40x:p%2Fw@h1,h2:9043,[::1]:9044/ks_1?replication_factor=2&consistency=ALL&connect_timeout_ms=250&request_timeout_ms=900&claim_lease_ms=700&retry_max_attempts=2&retry_initial_backoff_ms=3&retry_max_backoff_ms=4&migrate=false",
        )
        .unwrap();
        assert_eq!(c.nodes, ["h1:9042", "h2:9043", "[::1]:9044"]);
        assert_eq!(c.keyspace, "ks_1");
        assert_eq!(c.user.as_deref(), Some("u@x"));
        assert_eq!(c.password.as_deref(), Some("p/w"));
        assert_eq!(c.replication_factor, 2);
        assert_eq!(c.consistency, ConsistencyLevel::All);
        assert_eq!((c.connect_timeout_ms, c.request_timeout_ms), (250, 900));
        assert_eq!(c.claim_lease_ms, 700);
        assert_eq!(
            c.retry,
            RetryConfig {
                max_attempts: 2,
                initial_backoff_ms: 3,
                max_backoff_ms: 4
            }
        );
        assert!(!c.migrate);
        let d = ScyllaConfig::parse_url("scylla://127.0.0.1:9042").unwrap();
        assert_eq!(d.keyspace, "orchestrix");
        assert_eq!(d, ScyllaConfig::new(["127.0.0.1:9042"]));
    }

    #[test]
    fn bad_urls_are_typed_errors() {
        assert!(matches!(
            ScyllaConfig::parse_url("scylla://h/ks?nope=1"),
            Err(ScyllaError::UnknownParameter { key, .. }) if key == "nope"
        ));
        assert!(matches!(
            ScyllaConfig::parse_url("scylla://h/ks?consistency=most"),
            Err(ScyllaError::InvalidParameter { key, .. }) if key == "consistency"
        ));
        assert!(matches!(
            ScyllaConfig::parse_url("postgres://h/ks"),
            Err(ScyllaError::InvalidUrl { .. })
        ));
        assert!(matches!(
            ScyllaConfig::parse_url("scylla://h/Bad-Name"),
            Err(ScyllaError::InvalidConfig {
                field: "keyspace",
                ..
            })
        ));
        assert!(matches!(
            ScyllaConfig::parse_url("scylla://h:x/ks"),
            Err(ScyllaError::InvalidUrl { .. })
        ));
        assert!(matches!(
            ScyllaConfig::parse_url("scylla://h/ks?replication_factor=0"),
            Err(ScyllaError::InvalidConfig {
                field: "replication_factor",
                ..
            })
        ));
        let err = ScyllaConfig::parse_url("scylla://h/ks?password=hunter2&x=1").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        let err = ScyllaConfig::from_url("scylla://h/ks?nope=1").unwrap_err();
        assert!(
            matches!(err, orchestrix::Error::InvalidInput { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[cfg(not(feature = "tls"))]
    #[test]
    fn tls_without_the_feature_names_it() {
        let err = ScyllaConfig::parse_url("scylla://h/ks?tls=verify").unwrap_err();
        assert!(err.to_string().contains("`tls` feature"), "{err}");
    }
}
