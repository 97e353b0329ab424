//! Topic creation through the admin API (topics are created with their
//! partition count and replication factor when absent).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::{Client, DefaultClientContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};

/// Creates topics once per process and remembers which exist.
pub(crate) struct Topics {
    admin: AdminClient<DefaultClientContext>,
    brokers: String,
    connect_timeout: Duration,
    create: bool,
    partitions: i32,
    replication: i32,
    settings: Vec<(String, String)>,
    known: Mutex<HashSet<String>>,
}

impl std::fmt::Debug for Topics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topics")
            .field("create", &self.create)
            .field("partitions", &self.partitions)
            .finish_non_exhaustive()
    }
}

impl Topics {
    pub(crate) fn new(config: &KafkaConfig) -> Result<Self> {
        let admin = config
            .admin_client_config()
            .create()
            .map_err(|e| Error::kafka("create admin client", e))?;
        Ok(Self {
            admin,
            brokers: config.brokers.join(","),
            connect_timeout: config.connect_timeout(),
            create: config.topics.create,
            partitions: config.topics.partitions,
            replication: config.topics.replication,
            settings: config
                .topics
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            known: Mutex::new(HashSet::new()),
        })
    }

    /// Makes sure `topic` exists (when topic creation is enabled).
    pub(crate) async fn ensure(&self, topic: &str) -> Result<()> {
        if !self.create
            || self
                .known
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .contains(topic)
        {
            return Ok(());
        }
        probe(self.admin.inner(), &self.brokers, self.connect_timeout).await?;
        create(
            &self.admin,
            topic,
            self.partitions,
            self.replication,
            &self.settings,
            self.connect_timeout,
        )
        .await?;
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(topic.to_owned());
        Ok(())
    }
}

async fn create(
    admin: &AdminClient<DefaultClientContext>,
    topic: &str,
    partitions: i32,
    replication: i32,
    settings: &[(String, String)],
    timeout: Duration,
) -> Result<()> {
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (k, v) in settings {
        new = new.set(k, v);
    }
    let options = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    let results = admin
        .create_topics([&new], &options)
        .await
        .map_err(|e| Error::kafka("create topic", e))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(Error::kafka("create topic", KafkaError::AdminOp(code))),
        }
    }
    tracing::debug!(topic, partitions, replication, "topic ensured");
    Ok(())
}

/// Creates `topic` with `partitions` partitions (and the configured
/// replication and topic settings) unless it exists.
///
/// # Errors
/// [`Error::Kafka`] when the broker refuses or cannot be reached.
pub async fn ensure_topic(config: &KafkaConfig, topic: &str, partitions: i32) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .admin_client_config()
        .create()
        .map_err(|e| Error::kafka("create admin client", e))?;
    let settings: Vec<(String, String)> = config
        .topics
        .settings
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    probe(
        admin.inner(),
        &config.brokers.join(","),
        config.connect_timeout(),
    )
    .await?;
    create(
        &admin,
        topic,
        partitions,
        config.topics.replication,
        &settings,
        config.connect_timeout(),
    )
    .await
}

/// Checks that the cluster answers, within
/// [`KafkaConfig::connect_timeout_ms`]: a metadata request.
///
/// ```no_run
/// # async fn f() -> orchestrix_kafka::Result<()> {
/// let config = orchestrix_kafka::KafkaConfig::from_url("kafka://127.0.0.1:9092?connect_timeout_ms=2000")?;
/// orchestrix_kafka::admin::check_connection(&config).await?;
/// # Ok(()) }
/// ```
///
/// # Errors
/// [`Error::Unreachable`] naming the brokers when none answers in time;
/// [`Error::Kafka`] when the client cannot be created.
pub async fn check_connection(config: &KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = config
        .admin_client_config()
        .create()
        .map_err(|e| Error::kafka("create admin client", e))?;
    probe(
        admin.inner(),
        &config.brokers.join(","),
        config.connect_timeout(),
    )
    .await
}

/// A metadata request bounded by `timeout`, on a blocking thread (the client
/// call blocks).
pub(crate) async fn probe<C: rdkafka::ClientContext + 'static>(
    client: &Client<C>,
    brokers: &str,
    timeout: Duration,
) -> Result<()> {
    let unreachable = |source: orchestrix::BoxError| Error::Unreachable {
        brokers: brokers.to_owned(),
        after: timeout,
        source,
    };
    // `fetch_metadata` blocks up to `timeout`; `block_in_place` keeps the
    // borrow of `client` (a multi-threaded runtime is required by the
    // consumer anyway; elsewhere fall back to a plain blocking call).
    let fetch = || client.fetch_metadata(None, timeout);
    let result = match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(fetch)
        }
        _ => fetch(),
    };
    match result {
        Ok(metadata) if !metadata.brokers().is_empty() => Ok(()),
        Ok(_) => Err(unreachable("the cluster reported no brokers".into())),
        Err(e) => Err(unreachable(Box::new(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nothing listens on port 1: connecting fails within the configured
    /// time with an error that names the broker (it used to wait 60 s and say
    /// only "OperationTimedOut").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_cluster_fails_in_bounded_time_naming_the_brokers() {
        let config =
            KafkaConfig::from_url("kafka://127.0.0.1:1,127.0.0.1:2?connect_timeout_ms=300")
                .unwrap();
        let err = ensure_topic(&config, "orchestrix.never", 1)
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("127.0.0.1:1,127.0.0.1:2"), "{text}");
        assert!(err.is_transient());
        let core: orchestrix::Error = err.into();
        assert!(core.is_transient(), "{core}");
        assert!(core.to_string().contains("127.0.0.1:1"), "{core}");
    }
}
