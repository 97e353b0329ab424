//! [`NatsConfig`]: where the server is, how to authenticate, and how the
//! stream, the publisher, the consumers and their leases are set up.
//!
//! Every field has a default, so a config file names only what it changes;
//! unknown fields are rejected so that a typo never passes silently.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use orchestrix::url::{BackendUrl, Scheme};
use orchestrix::{Error, Result};
use serde::{Deserialize, Serialize};

/// Settings of the NATS adapter: connection, stream, publisher, consumers.
///
/// ```
/// use orchestrix_nats::{Auth, NatsConfig, Retention};
/// let config: NatsConfig = serde_json::from_str(r#"{
///     "urls": ["nats://10.0.0.1:4222", "nats://10.0.0.2:4222"],
///     "auth": { "method": "user_password", "user": "svc", "password": "s3cret" },
///     "stream": { "name": "BANK", "subject_prefix": "bank.events", "partitions": 12, "retention": "limits" },
///     "consumer": { "max_deliver": 8 }
/// }"#)?;
/// assert_eq!(config.stream.partitions, 12);
/// assert_eq!(config.stream.retention, Retention::Limits);
/// assert!(matches!(config.auth, Auth::UserPassword { .. }));
/// assert!(!format!("{config:?}").contains("s3cret")); // secrets are redacted in Debug
/// assert_eq!(config.consumer.ack_wait_ms, NatsConfig::default().consumer.ack_wait_ms);
/// assert!(serde_json::from_str::<NatsConfig>(r#"{ "url": "typo" }"#).is_err());
/// # Ok::<(), serde_json::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NatsConfig {
    /// Server URLs (`nats://host:port`, `tls://host:port`); the client picks
    /// one and fails over to the others. User and password or a token may be
    /// given in a URL (`nats://user:pass@host:4222`) instead of in `auth`.
    pub urls: Vec<String>,
    /// The connection name shown in the server's monitoring (`connz`).
    pub connection_name: Option<String>,
    /// How the client authenticates.
    pub auth: Auth,
    /// TLS settings.
    pub tls: TlsConfig,
    /// Timeout, in milliseconds, for connecting and for each JetStream API
    /// request and publish acknowledgement.
    pub request_timeout_ms: u64,
    /// The event stream.
    pub stream: StreamConfig,
    /// The publisher.
    pub publisher: PublisherConfig,
    /// The partitioned consumers.
    pub consumer: ConsumerConfig,
    /// Where dead letters go.
    pub dead_letters: DeadLetterConfig,
    /// Partition leases in a JetStream key-value bucket.
    pub leases: LeaseConfig,
}

impl Default for NatsConfig {
    fn default() -> Self {
        Self {
            urls: vec!["nats://127.0.0.1:4222".to_owned()],
            connection_name: None,
            auth: Auth::None,
            tls: TlsConfig::default(),
            request_timeout_ms: 5_000,
            stream: StreamConfig::default(),
            publisher: PublisherConfig::default(),
            consumer: ConsumerConfig::default(),
            dead_letters: DeadLetterConfig::default(),
            leases: LeaseConfig::default(),
        }
    }
}

/// How the client authenticates to the server.
///
/// Tagged by `method`: `none`, `token`, `user_password`, `nkey`, `creds_file`.
/// `Debug` never prints a secret.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "snake_case", deny_unknown_fields)]
pub enum Auth {
    /// No credentials (or credentials in the URL).
    #[default]
    None,
    /// A shared token (`authorization { token: ... }` on the server).
    Token {
        /// The token.
        token: String,
    },
    /// User name and password.
    UserPassword {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
    /// An NKey: the client signs the server's nonce with the seed.
    Nkey {
        /// The user's NKey seed (`SU...`).
        seed: String,
    },
    /// A `.creds` file holding a user JWT and its NKey seed (decentralized
    /// auth with an operator).
    CredsFile {
        /// Path of the `.creds` file.
        path: PathBuf,
    },
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::Token { .. } => f.debug_struct("Token").field("token", &"***").finish(),
            Self::UserPassword { user, .. } => f
                .debug_struct("UserPassword")
                .field("user", user)
                .field("password", &"***")
                .finish(),
            Self::Nkey { .. } => f.debug_struct("Nkey").field("seed", &"***").finish(),
            Self::CredsFile { path } => f.debug_struct("CredsFile").field("path", path).finish(),
        }
    }
}

/// TLS settings. With none set, TLS is used only when the server asks for it
/// or a URL has the `tls://` scheme.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Refuse to connect without TLS.
    pub required: bool,
    /// PEM file of the CA certificates that the server's certificate must
    /// chain to (in addition to the system roots).
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate, for mutual TLS; needs `client_key`.
    pub client_cert: Option<PathBuf>,
    /// PEM file of the client certificate's private key; needs `client_cert`.
    pub client_key: Option<PathBuf>,
}

/// How long the stream keeps messages (JetStream retention policy).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Keep messages until a limit (`max_age_secs`, size) removes them. Any
    /// number of consumer groups can read them. The default.
    #[default]
    Limits,
    /// Keep a message until every consumer that exists when it arrives has
    /// acknowledged it.
    Interest,
    /// Remove a message once it is acknowledged; allows only one consumer
    /// group (the partition consumers of one group do not overlap).
    WorkQueue,
}

/// Where the server stores the messages.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Storage {
    /// On disk (survives a server restart). The default.
    #[default]
    File,
    /// In memory.
    Memory,
}

/// The event stream: created or updated from this on start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamConfig {
    /// The JetStream stream name (letters, digits, `-`, `_`).
    pub name: String,
    /// Subject prefix: partition `p` is published on `{subject_prefix}.{p}`
    /// and the stream captures `{subject_prefix}.*`.
    pub subject_prefix: String,
    /// Number of partitions. A stream's events always go to partition
    /// `fnv1a64(stream id) % partitions`, so changing this moves streams
    /// between partitions: drain consumers first.
    pub partitions: u32,
    /// Retention policy.
    pub retention: Retention,
    /// Longest time, in seconds, a message is kept; `0` keeps messages forever.
    pub max_age_secs: u64,
    /// Replicas of each message (1 on a single server; 3 or 5 in a cluster).
    pub replicas: usize,
    /// Where messages are stored.
    pub storage: Storage,
    /// Window, in seconds, within which a message with the same `Nats-Msg-Id`
    /// (the event id) is dropped as a duplicate. A relay that restarts
    /// republishes its last unconfirmed batch; the window must be longer than
    /// such a restart takes.
    pub duplicate_window_secs: u64,
}

impl Default for StreamConfig {
    fn default() -> Self {
        Self {
            name: "ORCHESTRIX_EVENTS".to_owned(),
            subject_prefix: "orchestrix.events".to_owned(),
            partitions: 16,
            retention: Retention::Limits,
            max_age_secs: 0,
            replicas: 1,
            storage: Storage::File,
            duplicate_window_secs: 120,
        }
    }
}

/// The publisher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PublisherConfig {
    /// Most publishes whose acknowledgement is still awaited; the publisher
    /// waits for the oldest before sending more.
    pub max_outstanding_acks: usize,
    /// Create or update the streams when the publisher starts.
    pub ensure_stream: bool,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            max_outstanding_acks: 256,
            ensure_stream: true,
        }
    }
}

/// The partitioned consumers of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsumerConfig {
    /// Most deliveries of one message, the first included. A message whose
    /// handler still fails (transiently) on the last one is dead-lettered.
    pub max_deliver: u32,
    /// How long, in milliseconds, the server waits for an acknowledgement
    /// before redelivering (default 5 s). A handler that runs longer keeps
    /// its message with progress acknowledgements (every half ack wait), so
    /// this bounds only how soon a message comes back that no worker is
    /// handling: a crashed worker's, or one the server delivered just before
    /// it was killed and that never reached the client (the partition waits
    /// for it, one message in flight). With the earlier 30 s default, the
    /// chaos case `nats_restart` caught up 25 s after a SIGKILLed server's
    /// return; with 5 s, in under 3 s.
    pub ack_wait_ms: u64,
    /// Delay, in milliseconds, of the first redelivery after a transient
    /// failure (negative acknowledgement with delay); doubles on each further
    /// attempt, with jitter.
    pub nak_backoff_initial_ms: u64,
    /// Longest redelivery delay, in milliseconds.
    pub nak_backoff_max_ms: u64,
    /// Most messages of one partition delivered and not yet acknowledged.
    /// `1` (the default) keeps every stream's events in order even when a
    /// message is retried; larger values are faster but let the events after
    /// a retried one through before it.
    pub max_ack_pending: u32,
    /// Most messages asked for in one pull request.
    pub fetch_batch: usize,
    /// How long, in milliseconds, a pull request waits for messages.
    pub fetch_wait_ms: u64,
    /// How long, in milliseconds, a graceful shutdown waits for in-flight
    /// handlers before leaving anyway.
    pub shutdown_timeout_ms: u64,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            max_deliver: 5,
            ack_wait_ms: 5_000,
            nak_backoff_initial_ms: 200,
            nak_backoff_max_ms: 30_000,
            max_ack_pending: 1,
            fetch_batch: 100,
            fetch_wait_ms: 1_000,
            shutdown_timeout_ms: 30_000,
        }
    }
}

/// Where dead letters go: a subject, captured by a stream of its own so that
/// they can be listed and replayed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// The dead-letter subject; default `{stream.subject_prefix}-dead-letters`.
    /// It must not match `{stream.subject_prefix}.*`.
    pub subject: Option<String>,
    /// The stream that keeps dead letters; default `{stream.name}_DEAD_LETTERS`.
    pub stream: Option<String>,
    /// Do not create a dead-letter stream (someone else captures the subject,
    /// or dead letters are only observed live).
    pub no_stream: bool,
    /// Longest time, in seconds, a dead letter is kept; `0` keeps it forever.
    pub max_age_secs: u64,
}

/// Partition leases in a JetStream key-value bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LeaseConfig {
    /// The key-value bucket (letters, digits, `-`, `_`). One bucket serves
    /// many groups and streams: keys are prefixed with the group name.
    pub bucket: String,
    /// Time to live, in milliseconds, of a lease and of a worker's membership
    /// entry: a worker that stops renewing loses its partitions after this.
    pub ttl_ms: u64,
    /// Interval, in milliseconds, between renewals and rebalancing rounds;
    /// at most a third of `ttl_ms`.
    pub heartbeat_ms: u64,
    /// This worker's id in the group; default: host name, process id and a
    /// random suffix. Must be unique among live workers.
    pub worker_id: Option<String>,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        Self {
            bucket: "orchestrix_leases".to_owned(),
            ttl_ms: 10_000,
            heartbeat_ms: 2_000,
            worker_id: None,
        }
    }
}

fn invalid(what: &str, reason: impl Into<String>) -> Error {
    Error::invalid(format!("NATS config `{what}`"), reason)
}

/// Whether `name` is a valid stream, consumer or bucket name.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Whether `subject` is a literal subject (no wildcards, no empty tokens).
pub(crate) fn is_literal_subject(subject: &str) -> bool {
    !subject.is_empty()
        && subject.split('.').all(|t| {
            !t.is_empty()
                && t != "*"
                && t != ">"
                && !t.chars().any(|c| c.is_whitespace() || c.is_control())
        })
}

impl NatsConfig {
    /// The defaults with the server at `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            urls: vec![url.into()],
            ..Self::default()
        }
    }

    /// The config for a `nats://` URL. The query string sets the common
    /// options: `stream`, `prefix`, `partitions`, `bucket`, `replicas`,
    /// `max_deliver`; user and password (or a token) stay in the URL, where
    /// the client reads them. For several servers, set [`urls`](Self::urls).
    ///
    /// ```
    /// use orchestrix::url::BackendUrl;
    /// use orchestrix_nats::NatsConfig;
    /// let url = BackendUrl::parse("nats://svc:pw@10.0.0.1:4222?stream=BANK&prefix=bank.events&partitions=8")?;
    /// let c = NatsConfig::from_url(&url)?;
    /// assert_eq!(c.urls, ["nats://svc:pw@10.0.0.1:4222"]);
    /// assert_eq!((c.stream.name.as_str(), c.stream.subject_prefix.as_str(), c.stream.partitions), ("BANK", "bank.events", 8));
    /// assert!(NatsConfig::from_url(&BackendUrl::parse("nats://h:4222?partitons=8")?).is_err());
    /// assert!(NatsConfig::from_url(&BackendUrl::parse("kafka://h:9092")?).is_err());
    /// # Ok::<(), orchestrix::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for another scheme, an unknown or malformed
    /// option, or a config that fails [`validate`](Self::validate).
    pub fn from_url(url: &BackendUrl) -> Result<Self> {
        if url.scheme() != Scheme::Nats {
            return Err(Error::invalid(
                format!("backend URL `{url}`"),
                format!(
                    "the NATS adapter needs a `nats://` URL, not `{}://`",
                    url.scheme()
                ),
            ));
        }
        let (servers, query) = url.rest().split_once('?').unwrap_or((url.rest(), ""));
        let mut config = Self {
            urls: vec![format!("nats://{}", servers.trim_end_matches('/'))],
            ..Self::default()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let number = |what: &str| -> Result<u64> {
                value
                    .parse()
                    .map_err(|_| invalid(what, format!("`{value}` is not a non-negative integer")))
            };
            match key {
                "stream" => config.stream.name = value.to_owned(),
                "prefix" => config.stream.subject_prefix = value.to_owned(),
                "partitions" => {
                    config.stream.partitions =
                        u32::try_from(number(key)?).map_err(|_| invalid(key, "too large"))?;
                }
                "bucket" => config.leases.bucket = value.to_owned(),
                "replicas" => {
                    config.stream.replicas =
                        usize::try_from(number(key)?).map_err(|_| invalid(key, "too large"))?
                }
                "max_deliver" => {
                    config.consumer.max_deliver =
                        u32::try_from(number(key)?).map_err(|_| invalid(key, "too large"))?;
                }
                other => {
                    return Err(invalid(
                        other,
                        "unknown URL option (known: stream, prefix, partitions, bucket, replicas, max_deliver)",
                    ));
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks names, subjects and limits.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the field and the reason.
    pub fn validate(&self) -> Result<()> {
        if self.urls.is_empty() {
            return Err(invalid("urls", "at least one server URL is needed"));
        }
        if !is_valid_name(&self.stream.name) {
            return Err(invalid(
                "stream.name",
                format!("`{}` is not letters, digits, `-` and `_`", self.stream.name),
            ));
        }
        if !is_literal_subject(&self.stream.subject_prefix) {
            return Err(invalid(
                "stream.subject_prefix",
                format!(
                    "`{}` is not a subject without wildcards",
                    self.stream.subject_prefix
                ),
            ));
        }
        if self.stream.partitions == 0 {
            return Err(invalid("stream.partitions", "at least 1"));
        }
        if self.stream.replicas == 0 || self.stream.replicas > 5 {
            return Err(invalid("stream.replicas", "between 1 and 5"));
        }
        let dl = self.dead_letter_subject();
        if !is_literal_subject(&dl) {
            return Err(invalid(
                "dead_letters.subject",
                format!("`{dl}` is not a subject without wildcards"),
            ));
        }
        let prefix_tokens = self.stream.subject_prefix.split('.').count();
        if dl.split('.').count() == prefix_tokens + 1
            && dl.starts_with(&format!("{}.", self.stream.subject_prefix))
        {
            return Err(invalid(
                "dead_letters.subject",
                format!(
                    "`{dl}` would be captured by the event stream's `{}.*`",
                    self.stream.subject_prefix
                ),
            ));
        }
        if !self.dead_letters.no_stream && !is_valid_name(&self.dead_letter_stream()) {
            return Err(invalid(
                "dead_letters.stream",
                "letters, digits, `-` and `_`",
            ));
        }
        if self.consumer.max_deliver == 0 {
            return Err(invalid("consumer.max_deliver", "at least 1"));
        }
        if self.consumer.max_ack_pending == 0 {
            return Err(invalid("consumer.max_ack_pending", "at least 1"));
        }
        if self.consumer.fetch_batch == 0 {
            return Err(invalid("consumer.fetch_batch", "at least 1"));
        }
        if self.consumer.ack_wait_ms < 100 {
            return Err(invalid("consumer.ack_wait_ms", "at least 100"));
        }
        if self.publisher.max_outstanding_acks == 0 {
            return Err(invalid("publisher.max_outstanding_acks", "at least 1"));
        }
        if !is_valid_name(&self.leases.bucket) {
            return Err(invalid(
                "leases.bucket",
                format!(
                    "`{}` is not letters, digits, `-` and `_`",
                    self.leases.bucket
                ),
            ));
        }
        if self.leases.heartbeat_ms == 0
            || self.leases.heartbeat_ms.saturating_mul(3) > self.leases.ttl_ms
        {
            return Err(invalid(
                "leases.heartbeat_ms",
                "must be positive and at most a third of `leases.ttl_ms`",
            ));
        }
        if let Some(id) = &self.leases.worker_id
            && !is_valid_name(id)
        {
            return Err(invalid("leases.worker_id", "letters, digits, `-` and `_`"));
        }
        if self.tls.client_cert.is_some() != self.tls.client_key.is_some() {
            return Err(invalid("tls", "`client_cert` and `client_key` go together"));
        }
        Ok(())
    }

    /// The subject of partition `partition`.
    #[must_use]
    pub fn partition_subject(&self, partition: u32) -> String {
        format!("{}.{partition}", self.stream.subject_prefix)
    }

    /// The dead-letter subject (configured or derived).
    #[must_use]
    pub fn dead_letter_subject(&self) -> String {
        self.dead_letters
            .subject
            .clone()
            .unwrap_or_else(|| format!("{}-dead-letters", self.stream.subject_prefix))
    }

    /// The dead-letter stream name (configured or derived).
    #[must_use]
    pub fn dead_letter_stream(&self) -> String {
        self.dead_letters
            .stream
            .clone()
            .unwrap_or_else(|| format!("{}_DEAD_LETTERS", self.stream.name))
    }

    /// [`request_timeout_ms`](Self::request_timeout_ms) as a [`Duration`].
    #[must_use]
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }
}

impl ConsumerConfig {
    /// [`ack_wait_ms`](Self::ack_wait_ms) as a [`Duration`].
    #[must_use]
    pub fn ack_wait(&self) -> Duration {
        Duration::from_millis(self.ack_wait_ms)
    }

    /// [`fetch_wait_ms`](Self::fetch_wait_ms) as a [`Duration`].
    #[must_use]
    pub fn fetch_wait(&self) -> Duration {
        Duration::from_millis(self.fetch_wait_ms)
    }

    /// The retry policy these settings describe: `max_deliver` attempts,
    /// exponential redelivery delays between the two backoff bounds.
    #[must_use]
    pub fn retry_policy(&self) -> orchestrix::runtime::RetryPolicy {
        orchestrix::runtime::RetryPolicy::exponential(
            self.max_deliver,
            Duration::from_millis(self.nak_backoff_initial_ms),
            Duration::from_millis(self.nak_backoff_max_ms),
        )
    }
}

impl LeaseConfig {
    /// [`ttl_ms`](Self::ttl_ms) as a [`Duration`].
    #[must_use]
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.ttl_ms)
    }

    /// [`heartbeat_ms`](Self::heartbeat_ms) as a [`Duration`].
    #[must_use]
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_round_trips_and_validates() {
        let config = NatsConfig::default();
        config.validate().unwrap();
        let json = serde_json::to_string_pretty(&config).unwrap();
        assert_eq!(serde_json::from_str::<NatsConfig>(&json).unwrap(), config);
    }

    #[test]
    fn every_auth_method_round_trips() {
        for auth in [
            Auth::None,
            Auth::Token { token: "t".into() },
            Auth::UserPassword {
                user: "u".into(),
                password: "p".into(),
            },
            Auth::Nkey {
                seed: "SUAM".into(),
            },
            Auth::CredsFile {
                path: "/etc/nats/user.creds".into(),
            },
        ] {
            let config = NatsConfig {
                auth: auth.clone(),
                ..NatsConfig::default()
            };
            let json = serde_json::to_value(&config).unwrap();
            assert_eq!(
                serde_json::from_value::<NatsConfig>(json).unwrap().auth,
                auth
            );
        }
        let unknown = r#"{ "auth": { "method": "token", "token": "t", "tokne": "x" } }"#;
        assert!(serde_json::from_str::<NatsConfig>(unknown).is_err());
    }

    #[test]
    fn rejects_bad_names_subjects_and_limits() {
        let bad = [
            NatsConfig {
                urls: vec![],
                ..NatsConfig::default()
            },
            NatsConfig {
                stream: StreamConfig {
                    name: "has.dot".into(),
                    ..StreamConfig::default()
                },
                ..NatsConfig::default()
            },
            NatsConfig {
                stream: StreamConfig {
                    subject_prefix: "a.*".into(),
                    ..StreamConfig::default()
                },
                ..NatsConfig::default()
            },
            NatsConfig {
                stream: StreamConfig {
                    partitions: 0,
                    ..StreamConfig::default()
                },
                ..NatsConfig::default()
            },
            NatsConfig {
                dead_letters: DeadLetterConfig {
                    subject: Some("orchestrix.events.dlq".into()),
                    ..DeadLetterConfig::default()
                },
                ..NatsConfig::default()
            },
            NatsConfig {
                leases: LeaseConfig {
                    heartbeat_ms: 5_000,
                    ..LeaseConfig::default()
                },
                ..NatsConfig::default()
            },
            NatsConfig {
                tls: TlsConfig {
                    client_cert: Some("c.pem".into()),
                    ..TlsConfig::default()
                },
                ..NatsConfig::default()
            },
        ];
        for config in bad {
            let err = config.validate().unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{err}");
        }
    }

    #[test]
    fn derived_names() {
        let c = NatsConfig::default();
        assert_eq!(c.partition_subject(3), "orchestrix.events.3");
        assert_eq!(c.dead_letter_subject(), "orchestrix.events-dead-letters");
        assert_eq!(c.dead_letter_stream(), "ORCHESTRIX_EVENTS_DEAD_LETTERS");
        assert_eq!(c.consumer.retry_policy().max_attempts(), 5);
    }
}
