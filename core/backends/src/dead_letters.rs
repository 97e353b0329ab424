//! Dead letters by URL: the store's, or the bus's dead-letter topic or
//! stream, as one [`DeadLetterQueue`].
//!
//! A bus URL names its dead letters as [`start_on_bus`](crate::start_on_bus)
//! names its resources, so the URL a worker runs with finds that worker's
//! dead letters:
//!
//! - `nats://...?stream=S`: the dead-letter stream of `S`
//!   (`{S}_DEAD_LETTERS`, or the URL's dead-letter options);
//! - `kafka://...?prefix=P`: the dead-letter topic of `{P}.events`
//!   (`{P}.events.dlq` by default; with a `{group}` placeholder in the
//!   dead-letter template, one per handler's group `{P}_{handler}`).
//!
//! Without `stream` (NATS) or `prefix` (Kafka) in the URL the names derive
//! from the application's name, as the bus runtime's do, so the application
//! is needed then.
//!
//! With `format=avro` (feature `avro`) a letter's Confluent-framed value is
//! decoded through the registry before a handler sees it on replay: to the
//! reader's version with `schemas=DIR` in the URL, else to the version it was
//! written with (the letter keeps the original bytes either way).

use std::sync::Arc;

use orchestrix::dead_letter::{DeadLetterQueue, StoreDeadLetters};
use orchestrix::url::{BackendUrl, Scheme};
use orchestrix::{Application, Error, Result};

/// The dead letters the URL names: a bus's (`nats://`, `kafka://`) or a
/// store's (any store URL). `app` names the bus resources the URL does not
/// name (and, on Kafka, the handlers' groups).
///
/// ```
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// use orchestrix::dead_letter::DeadLetterFilter;
/// let queue = orchestrix_backends::dead_letters("memory://", None).await?;
/// assert_eq!(queue.describe(), "store");
/// assert!(queue.list(&DeadLetterFilter::default()).await?.is_empty());
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
///
/// # Errors
/// [`Error::InvalidInput`] for a malformed URL, or a bus URL that names
/// neither its stream or prefix nor comes with the application;
/// [`Error::FeatureNotEnabled`] for a bus not compiled in; a connection
/// error.
pub async fn dead_letters(
    url: &str,
    app: Option<&Application>,
) -> Result<Arc<dyn DeadLetterQueue>> {
    let (adapter_url, format) = crate::format::split_format(url)?;
    let parsed = BackendUrl::parse(&adapter_url)?;
    let queue = match parsed.scheme() {
        Scheme::Nats => nats(&parsed, app).await?,
        Scheme::Kafka => kafka(&adapter_url, app)?,
        _ => {
            return Ok(Arc::new(StoreDeadLetters::new(
                crate::open_store(url).await?,
            )));
        }
    };
    #[cfg(feature = "avro")]
    let catalog = Some(orchestrix_avro::AvroSchemas::new());
    #[cfg(not(feature = "avro"))]
    let catalog = None;
    Ok(match crate::format::value_format(&format, catalog)? {
        Some(format) => Arc::new(Decoded {
            inner: queue,
            format,
        }),
        None => queue,
    })
}

/// A bus's dead letters whose values are in a wire format (Avro): the event
/// a letter stands for is decoded as a bus consumer decodes it.
#[derive(Debug)]
struct Decoded {
    inner: Arc<dyn DeadLetterQueue>,
    format: Arc<dyn orchestrix::wire::ValueFormat>,
}

#[async_trait::async_trait]
impl DeadLetterQueue for Decoded {
    fn describe(&self) -> String {
        format!("{} ({} values)", self.inner.describe(), self.format.name())
    }

    async fn list(
        &self,
        filter: &orchestrix::dead_letter::DeadLetterFilter,
    ) -> Result<Vec<orchestrix::store::DeadLetter>> {
        self.inner.list(filter).await
    }

    async fn get(&self, id: uuid::Uuid) -> Result<Option<orchestrix::store::DeadLetter>> {
        self.inner.get(id).await
    }

    async fn resolve(&self, id: uuid::Uuid) -> Result<bool> {
        self.inner.resolve(id).await
    }

    async fn event(
        &self,
        letter: &orchestrix::store::DeadLetter,
    ) -> Result<orchestrix::RecordedEvent> {
        let event = self.inner.event(letter).await?;
        let topic = letter
            .headers
            .get(orchestrix::dead_letter::header::ORIGINAL_TOPIC)
            .cloned()
            .unwrap_or_default();
        self.format.inbound(&topic, event).await
    }
}

/// The application name the bus names derive from, or why there is none.
#[cfg(any(feature = "nats", feature = "kafka"))]
fn app_name(url: &str, app: Option<&Application>, key: &str) -> Result<String> {
    if let Some(app) = app {
        return Ok(crate::bus::name_token_of(app.name()));
    }
    if crate::bus::url_keys(url).iter().any(|k| k == key) {
        // Named by the URL. The name then only fills what reading does not
        // use (the NATS subject prefix), but must make a valid config.
        return Ok("dead_letters".to_owned());
    }
    Err(Error::invalid(
        format!("bus URL `{}`", orchestrix::url::redact(url)),
        format!(
            "it does not name its `{key}` (the bus runtime names it after the application): add \
             `{key}=...` or run the application's own command"
        ),
    ))
}

#[cfg(feature = "nats")]
async fn nats(url: &BackendUrl, app: Option<&Application>) -> Result<Arc<dyn DeadLetterQueue>> {
    let name = app_name(url.as_str(), app, "stream")?;
    let config = crate::bus::nats::config_named(&name, url)?;
    let client = orchestrix_nats::connect(&config).await?;
    Ok(Arc::new(orchestrix_nats::NatsDeadLetters::new(
        client, config,
    )))
}

#[cfg(not(feature = "nats"))]
async fn nats(_: &BackendUrl, _: Option<&Application>) -> Result<Arc<dyn DeadLetterQueue>> {
    Err(Error::FeatureNotEnabled {
        scheme: "nats".into(),
        feature: "nats",
        krate: "orchestrix-backends",
    })
}

#[cfg(feature = "kafka")]
fn kafka(url: &str, app: Option<&Application>) -> Result<Arc<dyn DeadLetterQueue>> {
    let name = app_name(url, app, "prefix")?;
    let config = crate::bus::kafka::config_named(&name, url)?;
    let topic = config.topics.topic_for_category("events");
    let prefix = &config.topics.prefix;
    let mut topics = Vec::new();
    if config.consumer.dead_letter_topic.contains("{group}") {
        let app = app.ok_or_else(|| {
            Error::invalid(
                format!("bus URL `{}`", orchestrix::url::redact(url)),
                "its dead-letter topics are per consumer group (`{group}`): run the \
                 application's own command, which knows its handlers",
            )
        })?;
        for registered in orchestrix::runtime::Runtime::handlers(app)? {
            let group = format!("{prefix}_{}", registered.name());
            topics.push(config.dead_letter_topic(&topic, &group));
        }
    } else {
        topics.push(config.dead_letter_topic(&topic, ""));
    }
    topics.dedup();
    Ok(Arc::new(orchestrix_kafka::KafkaDeadLetters::new(
        config, topics,
    )))
}

#[cfg(not(feature = "kafka"))]
fn kafka(_: &str, _: Option<&Application>) -> Result<Arc<dyn DeadLetterQueue>> {
    Err(Error::FeatureNotEnabled {
        scheme: "kafka".into(),
        feature: "kafka",
        krate: "orchestrix-backends",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_bus_url_without_its_names_needs_the_application() {
        for url in ["nats://127.0.0.1:4222", "kafka://127.0.0.1:9092"] {
            match dead_letters(url, None).await {
                Err(Error::InvalidInput { .. } | Error::FeatureNotEnabled { .. }) => {}
                other => panic!("{url}: {other:?}"),
            }
        }
    }

    #[cfg(feature = "kafka")]
    #[tokio::test]
    async fn kafka_dead_letters_are_named_as_the_bus_names_them() {
        let app = Application::builder(orchestrix::Store::memory())
            .name("bank")
            .build()
            .unwrap();
        let q = dead_letters("kafka://127.0.0.1:9092", Some(&app))
            .await
            .unwrap();
        assert_eq!(q.describe(), "kafka topic(s) orchestrix.bank.events.dlq");
        let q = dead_letters("kafka://127.0.0.1:9092?prefix=mine", None)
            .await
            .unwrap();
        assert_eq!(q.describe(), "kafka topic(s) mine.events.dlq");
    }

    #[cfg(feature = "nats")]
    #[test]
    fn a_nats_url_naming_its_stream_needs_no_application() {
        let url = BackendUrl::parse("nats://127.0.0.1:4222?stream=ORX_BANK").unwrap();
        let name = app_name(url.as_str(), None, "stream").unwrap();
        let config = crate::bus::nats::config_named(&name, &url).unwrap();
        assert_eq!(config.dead_letter_stream(), "ORX_BANK_DEAD_LETTERS");
    }
}
