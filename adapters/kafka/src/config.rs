//! Typed settings of the Kafka adapter, shared by the publisher, the consumer
//! workers and ingest.
//!
//! Every field has a default, so a config file names only what it changes.
//! Settings without a typed field are reachable through
//! [`KafkaConfig::librdkafka`], which is applied last.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use orchestrix::runtime::RetryPolicy;
use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Default bootstrap broker.
pub const DEFAULT_BROKER: &str = "127.0.0.1:9092";

/// Default of [`KafkaConfig::connect_timeout_ms`].
pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 10_000;

/// Everything the adapter needs to reach and use a Kafka cluster.
///
/// ```
/// use orchestrix_kafka::KafkaConfig;
/// let mut config = KafkaConfig::from_url("kafka://127.0.0.1:9092?group_id=billing&prefix=acme")?;
/// config.topics.template = "{prefix}.{context}".into(); // one topic per bounded context
/// config.librdkafka.insert("statistics.interval.ms".into(), "0".into());
/// config.validate()?;
/// assert_eq!(config.brokers, vec!["127.0.0.1:9092".to_owned()]);
/// assert_eq!(config.consumer.group_id.as_deref(), Some("billing"));
/// # Ok::<(), orchestrix_kafka::Error>(())
/// ```
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, `host:port` each (`bootstrap.servers`).
    pub brokers: Vec<String>,
    /// `client.id` reported to the brokers (shows in broker logs and quotas).
    pub client_id: String,
    /// How long the first contact with the cluster (topic creation, a
    /// consumer's start) may take before it fails with
    /// [`Error::Unreachable`], which names the brokers. Also librdkafka's
    /// `socket.connection.setup.timeout.ms`.
    pub connect_timeout_ms: u64,
    /// How topics are named and created.
    pub topics: TopicConfig,
    /// Producer settings (publisher, dead letters).
    pub producer: ProducerConfig,
    /// Consumer-group settings (workers, ingest).
    pub consumer: ConsumerConfig,
    /// TLS and SASL, passed through to librdkafka.
    pub security: SecurityConfig,
    /// Any librdkafka property (see librdkafka's `CONFIGURATION.md`), applied
    /// after the typed settings so that it wins. The properties the delivery
    /// guarantees rest on (`enable.idempotence`, `acks`, `enable.auto.commit`,
    /// `enable.auto.offset.store`) are refused by [`validate`](Self::validate)
    /// when set to a weaker value.
    pub librdkafka: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: vec![DEFAULT_BROKER.to_owned()],
            client_id: "orchestrix".to_owned(),
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            topics: TopicConfig::default(),
            producer: ProducerConfig::default(),
            consumer: ConsumerConfig::default(),
            security: SecurityConfig::default(),
            librdkafka: BTreeMap::new(),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let librdkafka: BTreeMap<&str, &str> = self
            .librdkafka
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str(),
                    if is_secret_key(k) { "***" } else { v.as_str() },
                )
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("connect_timeout_ms", &self.connect_timeout_ms)
            .field("topics", &self.topics)
            .field("producer", &self.producer)
            .field("consumer", &self.consumer)
            .field("security", &self.security)
            .field("librdkafka", &librdkafka)
            .finish()
    }
}

fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["password", "secret", "token", "key.pem", "jaas"]
        .iter()
        .any(|s| k.contains(s))
}

/// Topic naming and creation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicConfig {
    /// The topic of an event. Placeholders: `{prefix}`; `{category}`, the
    /// stream's category (aggregate type); `{context}`, the bounded context,
    /// which is the first path segment of the event's CloudEvents `source`
    /// (`/bank` gives `bank`, the module name). Default `{prefix}.{category}`
    /// (one topic per category); `{prefix}.{context}` gives one per bounded
    /// context. Characters Kafka does not allow in topic names become `_`.
    pub template: String,
    /// Value of `{prefix}`.
    pub prefix: String,
    /// Topic per category, overriding the template (category → topic).
    pub overrides: BTreeMap<String, String>,
    /// Create a topic through the admin API when it does not exist yet.
    pub create: bool,
    /// Partitions of created topics (also of dead-letter topics). More
    /// partitions allow more consumers in parallel; a stream always stays on one.
    pub partitions: i32,
    /// Replication factor of created topics (1 for a single local broker, 3 in
    /// production).
    pub replication: i32,
    /// Topic-level settings of created topics, e.g. `retention.ms`.
    pub settings: BTreeMap<String, String>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            template: "{prefix}.{category}".to_owned(),
            prefix: "orchestrix".to_owned(),
            overrides: BTreeMap::new(),
            create: true,
            partitions: 6,
            replication: 1,
            settings: BTreeMap::new(),
        }
    }
}

impl TopicConfig {
    /// The topic of an event of stream category `category` from CloudEvents
    /// source `source`.
    ///
    /// ```
    /// use orchestrix_kafka::config::TopicConfig;
    /// let mut t = TopicConfig::default();
    /// assert_eq!(t.topic_for("account", "/bank"), "orchestrix.account");
    /// t.template = "{prefix}.{context}.events".into();
    /// assert_eq!(t.topic_for("account", "/bank/v2"), "orchestrix.bank.events");
    /// t.overrides.insert("audit".into(), "legacy-audit".into());
    /// assert_eq!(t.topic_for("audit", "/x"), "legacy-audit");
    /// ```
    #[must_use]
    pub fn topic_for(&self, category: &str, source: &str) -> String {
        if let Some(topic) = self.overrides.get(category) {
            return topic.clone();
        }
        let context = context_of(source);
        let name = self
            .template
            .replace("{prefix}", &self.prefix)
            .replace("{category}", category)
            .replace("{context}", context);
        sanitize_topic(&name)
    }

    /// The topic of a category when the template does not use `{context}`.
    #[must_use]
    pub fn topic_for_category(&self, category: &str) -> String {
        self.topic_for(category, "/orchestrix")
    }
}

/// The bounded context named by a CloudEvents source: its first path segment.
fn context_of(source: &str) -> &str {
    let path = source.split_once("://").map_or(source, |(_, rest)| {
        rest.split_once('/').map_or("", |(_, p)| p)
    });
    path.trim_start_matches('/')
        .split(['/', '?', '#'])
        .next()
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
}

/// Replaces characters Kafka does not allow in a topic name with `_` and
/// truncates to 249 characters.
#[must_use]
pub fn sanitize_topic(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    s.truncate(249);
    s
}

/// Compression of produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4 (the default: cheap on CPU, good on JSON).
    Lz4,
    /// Zstandard (needs the `zstd` feature of this crate).
    Zstd,
}

impl Compression {
    fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
        }
    }
}

/// Producer settings. The producer is always idempotent with `acks=all`, so
/// a retried send neither duplicates nor reorders a partition's messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProducerConfig {
    /// `compression.type`.
    pub compression: Compression,
    /// `linger.ms`: how long to wait for more messages before sending a batch.
    pub linger_ms: u64,
    /// `batch.size`: largest batch per partition, in bytes.
    pub batch_size: u64,
    /// `batch.num.messages`: largest batch per partition, in messages.
    pub batch_messages: u64,
    /// `delivery.timeout.ms`: how long a message may take, retries included,
    /// before its send fails (the relay then retries the batch).
    pub delivery_timeout_ms: u64,
    /// `max.in.flight.requests.per.connection` (1 to 5 with idempotence).
    pub max_in_flight: u32,
    /// `queue.buffering.max.messages`: messages buffered in the client.
    pub queue_max_messages: u64,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        Self {
            compression: Compression::Lz4,
            linger_ms: 5,
            batch_size: 1_000_000,
            batch_messages: 10_000,
            delivery_timeout_ms: 60_000,
            max_in_flight: 5,
            queue_max_messages: 100_000,
        }
    }
}

/// Where a consumer group starts when it has no committed offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    /// From the oldest retained message.
    Earliest,
    /// From new messages only.
    Latest,
}

/// How a consumer retries a failing handler before dead-lettering the message
/// (permanent errors are never retried).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "policy", rename_all = "lowercase", deny_unknown_fields)]
pub enum RetryConfig {
    /// One attempt.
    None,
    /// A fixed wait between attempts.
    Fixed {
        /// Attempts in all.
        max_attempts: u32,
        /// Wait between attempts, in milliseconds.
        delay_ms: u64,
    },
    /// Exponential backoff with jitter.
    Exponential {
        /// Attempts in all.
        max_attempts: u32,
        /// Wait before the second attempt, in milliseconds.
        initial_ms: u64,
        /// Longest wait, in milliseconds.
        max_ms: u64,
    },
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self::Exponential {
            max_attempts: 5,
            initial_ms: 100,
            max_ms: 5_000,
        }
    }
}

impl From<RetryConfig> for RetryPolicy {
    fn from(c: RetryConfig) -> Self {
        match c {
            RetryConfig::None => RetryPolicy::none(),
            RetryConfig::Fixed {
                max_attempts,
                delay_ms,
            } => RetryPolicy::fixed(max_attempts, Duration::from_millis(delay_ms)),
            RetryConfig::Exponential {
                max_attempts,
                initial_ms,
                max_ms,
            } => RetryPolicy::exponential(
                max_attempts,
                Duration::from_millis(initial_ms),
                Duration::from_millis(max_ms),
            ),
        }
    }
}

/// Consumer-group settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsumerConfig {
    /// `group.id`. When absent, `{topics.prefix}.{handler name}`, so each
    /// projection or saga is its own group.
    pub group_id: Option<String>,
    /// `session.timeout.ms`: how long a silent member keeps its partitions.
    pub session_timeout_ms: u64,
    /// `heartbeat.interval.ms` (well below the session timeout).
    pub heartbeat_interval_ms: u64,
    /// `max.poll.interval.ms`. The workers poll continuously, so this only
    /// bounds a stuck poll thread.
    pub max_poll_interval_ms: u64,
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
    /// `fetch.wait.max.ms`: how long the broker may hold a fetch that found
    /// nothing new. Apache Kafka answers as soon as data arrives, so this
    /// only sets how often an idle consumer polls (librdkafka's default,
    /// 500 ms; measured on Kafka 4.1, 20, 100 and 500 ms give the same
    /// end-to-end latency). Some Kafka-protocol look-alikes (Tansu 0.6)
    /// answer only when the wait expires: lower it there.
    pub fetch_wait_max_ms: u64,
    /// How often handled offsets are committed (asynchronously); offsets are
    /// also committed synchronously on revoke and shutdown.
    pub commit_interval_ms: u64,
    /// Messages fetched but not yet handled, per partition, before the
    /// partition is paused.
    pub max_buffered_per_partition: usize,
    /// How long a revoke or shutdown waits for in-flight handlers.
    pub drain_timeout_ms: u64,
    /// Retries of a failing handler.
    pub retry: RetryConfig,
    /// The dead-letter topic. Placeholders: `{topic}` (the source topic),
    /// `{group}` (the group id), `{prefix}`. Default `{topic}.dlq`.
    pub dead_letter_topic: String,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        Self {
            group_id: None,
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 3_000,
            max_poll_interval_ms: 300_000,
            auto_offset_reset: OffsetReset::Earliest,
            fetch_wait_max_ms: 500,
            commit_interval_ms: 1_000,
            max_buffered_per_partition: 1_000,
            drain_timeout_ms: 30_000,
            retry: RetryConfig::default(),
            dead_letter_topic: "{topic}.dlq".to_owned(),
        }
    }
}

/// `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no SASL.
    Plaintext,
    /// TLS (needs the `ssl` or `ssl-vendored` feature).
    Ssl,
    /// SASL without TLS.
    SaslPlaintext,
    /// SASL over TLS.
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }
}

/// A secret: serialized as is, but never shown by `Debug`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// TLS and SASL settings, passed to librdkafka as they are. Anything else
/// (OAUTHBEARER, Kerberos options) goes through [`KafkaConfig::librdkafka`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SecurityConfig {
    /// `security.protocol`.
    pub protocol: SecurityProtocol,
    /// `ssl.ca.location`: CA certificate(s) to verify the brokers.
    pub ssl_ca_location: Option<String>,
    /// `ssl.certificate.location`: client certificate for mutual TLS.
    pub ssl_certificate_location: Option<String>,
    /// `ssl.key.location`: client private key for mutual TLS.
    pub ssl_key_location: Option<String>,
    /// `ssl.key.password`.
    pub ssl_key_password: Option<Secret>,
    /// `sasl.mechanism`: `PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER`, `GSSAPI`.
    pub sasl_mechanism: Option<String>,
    /// `sasl.username`.
    pub sasl_username: Option<String>,
    /// `sasl.password`.
    pub sasl_password: Option<Secret>,
}

impl Default for SecurityConfig {
    fn default() -> Self {
        Self {
            protocol: SecurityProtocol::Plaintext,
            ssl_ca_location: None,
            ssl_certificate_location: None,
            ssl_key_location: None,
            ssl_key_password: None,
            sasl_mechanism: None,
            sasl_username: None,
            sasl_password: None,
        }
    }
}

const KNOWN_PLACEHOLDERS: &[&str] = &["{prefix}", "{category}", "{context}", "{topic}", "{group}"];

fn check_template(what: &str, template: &str, allowed: &[&str]) -> Result<()> {
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let end = rest[start..]
            .find('}')
            .ok_or_else(|| Error::config(what, format!("unclosed `{{` in `{template}`")))?;
        let placeholder = &rest[start..start + end + 1];
        if !allowed.contains(&placeholder) {
            let known = if KNOWN_PLACEHOLDERS.contains(&placeholder) {
                " here"
            } else {
                ""
            };
            return Err(Error::config(
                what,
                format!(
                    "unknown placeholder {placeholder}{known} (allowed: {})",
                    allowed.join(", ")
                ),
            ));
        }
        rest = &rest[start + end + 1..];
    }
    Ok(())
}

impl KafkaConfig {
    /// Settings from a `kafka://host:port[,host:port...][?key=value...]` URL.
    /// Keys: `client_id`, `group_id`, `prefix`, `partitions`, `replication`,
    /// `connect_timeout_ms`;
    /// any key with a dot is a librdkafka property.
    ///
    /// # Errors
    /// [`Error::Url`] for another scheme or an unknown key, [`Error::Config`]
    /// for no broker.
    pub fn from_url(url: &str) -> Result<Self> {
        let shown = orchestrix::url::redact(url);
        let Some(rest) = url.strip_prefix("kafka://") else {
            return Err(Error::url(
                shown,
                "expected `kafka://host:port[,host:port]`",
            ));
        };
        let (hosts, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut config = Self {
            brokers: hosts
                .trim_end_matches('/')
                .split(',')
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect(),
            ..Self::default()
        };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let bad = |reason: String| Error::url(shown.clone(), reason);
            let int = |v: &str| {
                v.parse::<i32>()
                    .map_err(|_| bad(format!("`{key}` must be an integer")))
            };
            match &*key {
                "client_id" => config.client_id = value.into_owned(),
                "group_id" => config.consumer.group_id = Some(value.into_owned()),
                "prefix" => config.topics.prefix = value.into_owned(),
                "partitions" => config.topics.partitions = int(&value)?,
                "replication" => config.topics.replication = int(&value)?,
                "connect_timeout_ms" => {
                    config.connect_timeout_ms = value
                        .parse()
                        .map_err(|_| bad(format!("`{key}` must be an integer")))?;
                }
                k if k.contains('.') => {
                    config.librdkafka.insert(k.to_owned(), value.into_owned());
                }
                other => {
                    return Err(bad(format!(
                        "unknown key `{other}` (known: client_id, group_id, prefix, partitions, replication, connect_timeout_ms, or a librdkafka property)"
                    )));
                }
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks the settings before any client is built.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting and why.
    pub fn validate(&self) -> Result<()> {
        if self.brokers.is_empty()
            || self
                .brokers
                .iter()
                .any(|b| b.trim().is_empty() || b.contains(','))
        {
            return Err(Error::config(
                "brokers",
                "list at least one `host:port`, one per entry",
            ));
        }
        check_template(
            "topics.template",
            &self.topics.template,
            &["{prefix}", "{category}", "{context}"],
        )?;
        if sanitize_topic(&self.topics.template.replace(['{', '}'], "")).is_empty() {
            return Err(Error::config("topics.template", "is empty"));
        }
        if self.connect_timeout_ms == 0 {
            return Err(Error::config("connect_timeout_ms", "must be at least 1"));
        }
        if self.topics.partitions < 1 {
            return Err(Error::config("topics.partitions", "must be at least 1"));
        }
        if self.topics.replication < 1 {
            return Err(Error::config("topics.replication", "must be at least 1"));
        }
        check_template(
            "consumer.dead_letter_topic",
            &self.consumer.dead_letter_topic,
            &["{topic}", "{group}", "{prefix}"],
        )?;
        if self.consumer.dead_letter_topic == "{topic}" {
            return Err(Error::config(
                "consumer.dead_letter_topic",
                "must differ from the source topic",
            ));
        }
        if !(1..=5).contains(&self.producer.max_in_flight) {
            return Err(Error::config(
                "producer.max_in_flight",
                "must be 1 to 5 with the idempotent producer",
            ));
        }
        if self.consumer.heartbeat_interval_ms >= self.consumer.session_timeout_ms {
            return Err(Error::config(
                "consumer.heartbeat_interval_ms",
                "must be below consumer.session_timeout_ms",
            ));
        }
        if self.consumer.max_buffered_per_partition == 0 {
            return Err(Error::config(
                "consumer.max_buffered_per_partition",
                "must be at least 1",
            ));
        }
        for (key, required) in [
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
        ] {
            if let Some(v) = self.librdkafka.get(key) {
                let same = v.eq_ignore_ascii_case(required) || (key == "acks" && (v == "-1"));
                if !same {
                    return Err(Error::config(
                        format!("librdkafka.{key}"),
                        format!(
                            "must stay `{required}`: Orchestrix's ordering and no-loss guarantees rest on it"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn common(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", self.brokers.join(","));
        c.set("client.id", &self.client_id);
        c.set(
            "socket.connection.setup.timeout.ms",
            self.connect_timeout_ms.max(1_000).to_string(),
        );
        let s = &self.security;
        c.set("security.protocol", s.protocol.as_str());
        let optional = [
            ("ssl.ca.location", s.ssl_ca_location.as_deref()),
            (
                "ssl.certificate.location",
                s.ssl_certificate_location.as_deref(),
            ),
            ("ssl.key.location", s.ssl_key_location.as_deref()),
            (
                "ssl.key.password",
                s.ssl_key_password.as_ref().map(Secret::expose),
            ),
            ("sasl.mechanism", s.sasl_mechanism.as_deref()),
            ("sasl.username", s.sasl_username.as_deref()),
            (
                "sasl.password",
                s.sasl_password.as_ref().map(Secret::expose),
            ),
        ];
        for (key, value) in optional {
            if let Some(v) = value {
                c.set(key, v);
            }
        }
        c
    }

    fn overrides(&self, c: &mut ClientConfig) {
        for (k, v) in &self.librdkafka {
            c.set(k, v);
        }
    }

    /// The librdkafka settings of the idempotent producer.
    #[must_use]
    pub fn producer_client_config(&self) -> ClientConfig {
        let p = &self.producer;
        let mut c = self.common();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", p.compression.as_str())
            .set("linger.ms", p.linger_ms.to_string())
            .set("batch.size", p.batch_size.to_string())
            .set("batch.num.messages", p.batch_messages.to_string())
            .set("delivery.timeout.ms", p.delivery_timeout_ms.to_string())
            .set(
                "max.in.flight.requests.per.connection",
                p.max_in_flight.to_string(),
            )
            .set(
                "queue.buffering.max.messages",
                p.queue_max_messages.to_string(),
            );
        self.overrides(&mut c);
        c
    }

    /// The librdkafka settings of a group consumer with manual commits.
    #[must_use]
    pub fn consumer_client_config(&self, group_id: &str) -> ClientConfig {
        let k = &self.consumer;
        let mut c = self.common();
        c.set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false")
            .set("session.timeout.ms", k.session_timeout_ms.to_string())
            .set("heartbeat.interval.ms", k.heartbeat_interval_ms.to_string())
            .set("max.poll.interval.ms", k.max_poll_interval_ms.to_string())
            .set("fetch.wait.max.ms", k.fetch_wait_max_ms.to_string())
            .set(
                "auto.offset.reset",
                match k.auto_offset_reset {
                    OffsetReset::Earliest => "earliest",
                    OffsetReset::Latest => "latest",
                },
            );
        self.overrides(&mut c);
        c
    }

    /// The librdkafka settings of the admin client (topic creation).
    #[must_use]
    pub fn admin_client_config(&self) -> ClientConfig {
        let mut c = self.common();
        self.overrides(&mut c);
        c
    }

    /// [`connect_timeout_ms`](Self::connect_timeout_ms) as a duration.
    #[must_use]
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    /// The consumer group of a handler: the configured one, or
    /// `{prefix}.{handler name}`.
    #[must_use]
    pub fn group_for(&self, handler: &str) -> String {
        self.consumer
            .group_id
            .clone()
            .unwrap_or_else(|| format!("{}.{}", self.topics.prefix, handler))
    }

    /// The dead-letter topic of messages from `topic` failed by `group`.
    ///
    /// ```
    /// let c = orchestrix_kafka::KafkaConfig::default();
    /// assert_eq!(c.dead_letter_topic("orchestrix.account", "g"), "orchestrix.account.dlq");
    /// ```
    #[must_use]
    pub fn dead_letter_topic(&self, topic: &str, group: &str) -> String {
        sanitize_topic(
            &self
                .consumer
                .dead_letter_topic
                .replace("{topic}", topic)
                .replace("{group}", group)
                .replace("{prefix}", &self.topics.prefix),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_guarantees_are_enforced() {
        KafkaConfig::default().validate().unwrap();
        let p = KafkaConfig::default().producer_client_config();
        assert_eq!(p.get("enable.idempotence"), Some("true"));
        assert_eq!(p.get("acks"), Some("all"));
        let c = KafkaConfig::default().consumer_client_config("g");
        assert_eq!(c.get("enable.auto.commit"), Some("false"));
        assert_eq!(c.get("group.id"), Some("g"));

        let mut weak = KafkaConfig::default();
        weak.librdkafka
            .insert("enable.auto.commit".into(), "true".into());
        let err = weak.validate().unwrap_err().to_string();
        assert!(err.contains("enable.auto.commit"), "{err}");
    }

    #[test]
    fn librdkafka_map_reaches_every_client_and_wins() {
        let mut c = KafkaConfig::default();
        c.librdkafka.insert("linger.ms".into(), "42".into());
        c.librdkafka.insert("fetch.min.bytes".into(), "7".into());
        assert_eq!(c.producer_client_config().get("linger.ms"), Some("42"));
        assert_eq!(
            c.consumer_client_config("g").get("fetch.min.bytes"),
            Some("7")
        );
        assert_eq!(c.admin_client_config().get("fetch.min.bytes"), Some("7"));
    }

    #[test]
    fn security_is_passed_through_and_secrets_are_not_shown() {
        let mut c = KafkaConfig::default();
        c.security.protocol = SecurityProtocol::SaslSsl;
        c.security.sasl_mechanism = Some("SCRAM-SHA-512".into());
        c.security.sasl_username = Some("svc".into());
        c.security.sasl_password = Some(Secret::new("hunter2"));
        c.librdkafka
            .insert("sasl.oauthbearer.client.secret".into(), "s3cret".into());
        let client = c.producer_client_config();
        assert_eq!(client.get("security.protocol"), Some("sasl_ssl"));
        assert_eq!(client.get("sasl.password"), Some("hunter2"));
        let shown = format!("{c:?}");
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
    }

    #[test]
    fn urls_parse_with_many_brokers_and_options() {
        let c = KafkaConfig::from_url(
            "kafka://a:9092,b:9093/?client_id=svc&partitions=12&socket.keepalive.enable=true",
        )
        .unwrap();
        assert_eq!(c.brokers, ["a:9092", "b:9093"]);
        assert_eq!(c.client_id, "svc");
        assert_eq!(c.topics.partitions, 12);
        assert_eq!(c.librdkafka["socket.keepalive.enable"], "true");
        for bad in [
            "nats://x:1",
            "kafka://",
            "kafka://a:1?nope=1",
            "kafka://a:1?partitions=x",
        ] {
            assert!(KafkaConfig::from_url(bad).is_err(), "{bad}");
        }
    }

    /// URL errors name the URL once, in one pair of backticks (they used to
    /// read "invalid Kafka setting `URL `kafka://...``").
    #[test]
    fn url_errors_do_not_nest_backticks() {
        for (url, reason) in [
            ("nats://x:1", "expected `kafka://host:port[,host:port]`"),
            ("kafka://a:1?nope=1", "unknown key `nope`"),
            (
                "kafka://a:1?partitions=x",
                "`partitions` must be an integer",
            ),
        ] {
            let err = KafkaConfig::from_url(url).unwrap_err();
            let text = err.to_string();
            assert!(
                text.starts_with(&format!("invalid Kafka URL `{url}`: ")),
                "{text}"
            );
            assert!(text.contains(reason), "{text}");
            assert!(!text.contains("``"), "{text}");
            let core: orchestrix::Error = err.into();
            let text = core.to_string();
            assert!(
                text.starts_with(&format!("invalid Kafka URL `{url}`: ")),
                "{text}"
            );
            assert!(!text.contains("``"), "{text}");
        }
        let err = KafkaConfig::from_url("kafka://u:secret@a:1?nope=1").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
        let c = KafkaConfig::from_url("kafka://a:1?connect_timeout_ms=250").unwrap();
        assert_eq!(c.connect_timeout(), Duration::from_millis(250));
    }

    #[test]
    fn templates_are_checked() {
        let mut c = KafkaConfig::default();
        c.topics.template = "{prefix}.{aggregate}".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("{aggregate}")
        );
        c.topics.template = "{prefix}.{context".into();
        assert!(c.validate().is_err());
        let mut c = KafkaConfig::default();
        c.consumer.dead_letter_topic = "{group}.{topic}.dead".into();
        c.validate().unwrap();
        assert_eq!(c.dead_letter_topic("t", "g"), "g.t.dead");
    }

    #[test]
    fn topic_names_are_sanitized() {
        let t = TopicConfig {
            template: "{prefix}.{context}".into(),
            ..TopicConfig::default()
        };
        assert_eq!(
            t.topic_for("x", "https://acme.com/bank accounts/x"),
            "orchestrix.bank_accounts"
        );
        assert_eq!(t.topic_for("x", ""), "orchestrix.default");
        assert_eq!(t.topic_for("x", "urn:acme"), "orchestrix.urn_acme");
    }
}
