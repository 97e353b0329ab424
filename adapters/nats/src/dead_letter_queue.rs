//! The dead letters of a JetStream dead-letter stream as a
//! [`DeadLetterQueue`]: listed, inspected, resolved and replayed as the
//! store's are.
//!
//! Resolving a letter deletes its message from the stream by sequence
//! (JetStream can), so it is gone for every reader. A letter's id is its
//! [`DEAD_LETTER_ID_HEADER`](crate::dead_letter::DEAD_LETTER_ID_HEADER), or
//! one derived from the stream and sequence for messages without it: stable
//! across listings.

use std::collections::HashMap;

use async_nats::jetstream::{self, context::GetStreamErrorKind};
use async_trait::async_trait;
use orchestrix::cloudevent::binary;
use orchestrix::dead_letter::{DeadLetterFilter, DeadLetterQueue, event_from_binary};
use orchestrix::store::DeadLetter;
use orchestrix::{RecordedEvent, Result};
use uuid::Uuid;

use crate::config::NatsConfig;
use crate::dead_letter::list_dead_letters;
use crate::error::client;

/// The dead letters of the dead-letter stream of a [`NatsConfig`]
/// ([`NatsConfig::dead_letter_stream`]).
///
/// ```no_run
/// use orchestrix::dead_letter::{DeadLetterFilter, DeadLetterQueue};
/// use orchestrix_nats::{NatsConfig, NatsDeadLetters};
/// # async fn f() -> orchestrix::Result<()> {
/// let url = orchestrix::url::BackendUrl::parse("nats://127.0.0.1:4222?stream=ORX_BANK")?;
/// let config = NatsConfig::from_url(&url)?;
/// let client = orchestrix_nats::connect(&config).await?;
/// let queue = NatsDeadLetters::new(client, config);
/// for letter in queue.list(&DeadLetterFilter::default()).await? {
///     println!("{} {} {}", letter.id, letter.consumer, letter.reason);
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct NatsDeadLetters {
    js: jetstream::Context,
    config: NatsConfig,
}

impl NatsDeadLetters {
    /// The dead letters of `config`'s dead-letter stream, through `client`.
    #[must_use]
    pub fn new(client: async_nats::Client, config: NatsConfig) -> Self {
        Self {
            js: jetstream::new(client),
            config,
        }
    }

    /// Every message of the stream as a letter with its sequence; none
    /// without the stream.
    async fn read_raw(&self) -> Result<Vec<(u64, DeadLetter)>> {
        let name = self.config.dead_letter_stream();
        match self.js.get_stream(&name).await {
            Ok(_) => {}
            Err(e) if matches!(e.kind(), GetStreamErrorKind::JetStream(j) if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND) =>
            {
                return Ok(Vec::new());
            }
            Err(e) => {
                return Err(client(
                    "dead_letters",
                    true,
                    format!("open stream `{name}`"),
                    e,
                ));
            }
        }
        list_dead_letters(&self.js, &self.config, 1, usize::MAX).await
    }

    /// Every letter with its sequence, oldest first.
    async fn read(&self) -> Result<Vec<(u64, DeadLetter)>> {
        let mut all = self.read_raw().await?;
        // One letter per id (a re-published copy shares it).
        let mut first: HashMap<Uuid, u64> = HashMap::new();
        all.retain(|(seq, l)| *first.entry(l.id).or_insert(*seq) == *seq);
        all.sort_by_key(|(seq, l)| (l.failed_at, *seq));
        Ok(all)
    }
}

#[async_trait]
impl DeadLetterQueue for NatsDeadLetters {
    fn describe(&self) -> String {
        format!("nats stream {}", self.config.dead_letter_stream())
    }

    async fn list(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>> {
        let all = self.read().await?.into_iter().map(|(_, l)| l).collect();
        Ok(filter.apply(all))
    }

    async fn get(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        Ok(self
            .read()
            .await?
            .into_iter()
            .find(|(_, l)| l.id == id)
            .map(|(_, l)| l))
    }

    async fn resolve(&self, id: Uuid) -> Result<bool> {
        // Every copy of the letter (a re-published one shares the id).
        let sequences: Vec<u64> = self
            .read_raw()
            .await?
            .into_iter()
            .filter(|(_, l)| l.id == id)
            .map(|(seq, _)| seq)
            .collect();
        if sequences.is_empty() {
            return Ok(false);
        }
        let name = self.config.dead_letter_stream();
        let stream = self
            .js
            .get_stream(&name)
            .await
            .map_err(|e| client("dead_letters", true, format!("open stream `{name}`"), e))?;
        for seq in sequences {
            stream.delete_message(seq).await.map_err(|e| {
                client(
                    "dead_letters",
                    true,
                    format!("delete message {seq} of stream `{name}`"),
                    e,
                )
            })?;
        }
        tracing::debug!(%id, stream = %name, "dead letter resolved");
        Ok(true)
    }

    async fn event(&self, letter: &DeadLetter) -> Result<RecordedEvent> {
        event_from_binary(letter, binary::NATS_PREFIX)
    }
}
