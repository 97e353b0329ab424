//! Topic creation through the admin API (topics are created with their
//! partition count and replication factor when absent).

use std::collections::HashSet;
use std::sync::Mutex;
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::config::KafkaConfig;
use crate::error::{Error, Result};

/// Creates topics once per process and remembers which exist.
pub(crate) struct Topics {
    admin: AdminClient<DefaultClientContext>,
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
        create(
            &self.admin,
            topic,
            self.partitions,
            self.replication,
            &self.settings,
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
) -> Result<()> {
    let mut new = NewTopic::new(topic, partitions, TopicReplication::Fixed(replication));
    for (k, v) in settings {
        new = new.set(k, v);
    }
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
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
    create(
        &admin,
        topic,
        partitions,
        config.topics.replication,
        &settings,
    )
    .await
}
