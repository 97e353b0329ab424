//! Creating or updating the JetStream resources from the config: the event
//! stream, the dead-letter stream and the lease bucket.

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use orchestrix::Result;

use crate::config::{NatsConfig, Retention, Storage};
use crate::error::{NatsError, backend, client, is_not_found};

fn retention(r: Retention) -> stream::RetentionPolicy {
    match r {
        Retention::Limits => stream::RetentionPolicy::Limits,
        Retention::Interest => stream::RetentionPolicy::Interest,
        Retention::WorkQueue => stream::RetentionPolicy::WorkQueue,
    }
}

fn storage(s: Storage) -> stream::StorageType {
    match s {
        Storage::File => stream::StorageType::File,
        Storage::Memory => stream::StorageType::Memory,
    }
}

/// The event stream's config: `{prefix}.*`, with the configured limits.
#[must_use]
pub fn event_stream_config(config: &NatsConfig) -> stream::Config {
    let s = &config.stream;
    stream::Config {
        name: s.name.clone(),
        subjects: vec![format!("{}.*", s.subject_prefix)],
        retention: retention(s.retention),
        max_age: Duration::from_secs(s.max_age_secs),
        num_replicas: s.replicas,
        storage: storage(s.storage),
        duplicate_window: Duration::from_secs(s.duplicate_window_secs),
        description: Some("Orchestrix events, one subject per partition".to_owned()),
        ..Default::default()
    }
}

/// The dead-letter stream's config.
#[must_use]
pub fn dead_letter_stream_config(config: &NatsConfig) -> stream::Config {
    stream::Config {
        name: config.dead_letter_stream(),
        subjects: vec![config.dead_letter_subject()],
        retention: stream::RetentionPolicy::Limits,
        max_age: Duration::from_secs(config.dead_letters.max_age_secs),
        num_replicas: config.stream.replicas,
        storage: stream::StorageType::File,
        duplicate_window: Duration::from_secs(120),
        description: Some("Orchestrix dead letters".to_owned()),
        ..Default::default()
    }
}

/// The lease bucket's stream, with the key-value conventions (the client's
/// `create_key_value` cannot parse a 2.9 server's reply, so the stream is
/// made by hand): `KV_<bucket>`, subjects `$KV.<bucket>.>`, one message per
/// subject, discard new, rollups allowed, deletes denied, direct get, and
/// every entry expiring after the lease TTL unless renewed.
#[must_use]
pub fn lease_bucket_config(config: &NatsConfig) -> stream::Config {
    let bucket = &config.leases.bucket;
    let ttl = config.leases.ttl();
    stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        discard: stream::DiscardPolicy::New,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        max_age: ttl,
        duplicate_window: ttl.min(Duration::from_secs(120)),
        num_replicas: config.stream.replicas,
        storage: stream::StorageType::File,
        max_bytes: -1,
        max_messages: -1,
        max_message_size: -1,
        description: Some("Orchestrix partition leases".to_owned()),
        ..Default::default()
    }
}

/// Creates the stream, or updates the settings that differ. Settings the
/// server cannot change in place (retention, storage) are reported as a
/// [`NatsError::StreamMismatch`].
///
/// # Errors
/// A permanent [`orchestrix::Error::Backend`] when the server refuses the
/// config, a transient one when it does not answer.
pub async fn ensure_stream(
    js: &jetstream::Context,
    wanted: stream::Config,
) -> Result<stream::Info> {
    let name = wanted.name.clone();
    for _ in 0..3 {
        match js.get_stream(&name).await {
            Ok(existing) => {
                let info = existing.cached_info();
                let current = &info.config;
                if current.retention != wanted.retention {
                    return Err(mismatch(
                        &name,
                        "retention",
                        current.retention,
                        wanted.retention,
                    ));
                }
                if current.storage != wanted.storage {
                    return Err(mismatch(&name, "storage", current.storage, wanted.storage));
                }
                let differs = current.subjects != wanted.subjects
                    || current.max_age != wanted.max_age
                    || current.num_replicas != wanted.num_replicas
                    || current.duplicate_window != wanted.duplicate_window
                    || (wanted.max_messages_per_subject != 0
                        && current.max_messages_per_subject != wanted.max_messages_per_subject)
                    || current.allow_rollup != wanted.allow_rollup
                    || current.deny_delete != wanted.deny_delete
                    || current.allow_direct != wanted.allow_direct
                    || current.discard != wanted.discard;
                if !differs {
                    return Ok(info.clone());
                }
                let mut updated = current.clone();
                updated.subjects.clone_from(&wanted.subjects);
                updated.max_age = wanted.max_age;
                updated.num_replicas = wanted.num_replicas;
                updated.duplicate_window = wanted.duplicate_window;
                if wanted.max_messages_per_subject != 0 {
                    updated.max_messages_per_subject = wanted.max_messages_per_subject;
                }
                updated.allow_rollup = wanted.allow_rollup;
                updated.deny_delete = wanted.deny_delete;
                updated.allow_direct = wanted.allow_direct;
                updated.discard = wanted.discard;
                tracing::info!(stream = %name, "updating stream settings");
                return js.update_stream(&updated).await.map_err(|e| {
                    client("ensure_stream", false, format!("update stream `{name}`"), e)
                });
            }
            Err(e) if matches!(e.kind(), jetstream::context::GetStreamErrorKind::JetStream(ref j) if is_not_found(j)) =>
            {
                match js.create_stream(wanted.clone()).await {
                    Ok(created) => {
                        tracing::info!(stream = %name, "created stream");
                        return Ok(created.cached_info().clone());
                    }
                    // Another process may have created it meanwhile: look again.
                    Err(e)
                        if matches!(
                            e.kind(),
                            jetstream::context::CreateStreamErrorKind::JetStream(_)
                        ) =>
                    {
                        tracing::debug!(stream = %name, error = %e, "create failed; looking again");
                    }
                    Err(e) => {
                        return Err(client(
                            "ensure_stream",
                            true,
                            format!("create stream `{name}`"),
                            e,
                        ));
                    }
                }
            }
            Err(e) => {
                return Err(client(
                    "ensure_stream",
                    true,
                    format!("look up stream `{name}`"),
                    e,
                ));
            }
        }
    }
    Err(client(
        "ensure_stream",
        false,
        format!("create stream `{name}`"),
        "the server refused to create it and it does not exist",
    ))
}

fn mismatch(
    stream: &str,
    field: &'static str,
    existing: impl std::fmt::Debug,
    wanted: impl std::fmt::Debug,
) -> orchestrix::Error {
    backend(
        "ensure_stream",
        false,
        NatsError::StreamMismatch {
            stream: stream.to_owned(),
            field,
            existing: format!("{existing:?}").to_lowercase(),
            wanted: format!("{wanted:?}").to_lowercase(),
        },
    )
}

/// Creates or updates the event stream and, unless disabled, the
/// dead-letter stream.
///
/// # Errors
/// As [`ensure_stream`].
pub async fn ensure_streams(js: &jetstream::Context, config: &NatsConfig) -> Result<()> {
    ensure_stream(js, event_stream_config(config)).await?;
    if !config.dead_letters.no_stream {
        ensure_stream(js, dead_letter_stream_config(config)).await?;
    }
    Ok(())
}

/// Creates or updates the lease bucket's stream and opens it as a key-value
/// store.
///
/// # Errors
/// As [`ensure_stream`].
pub async fn ensure_lease_bucket(
    js: &jetstream::Context,
    config: &NatsConfig,
) -> Result<kv::Store> {
    ensure_stream(js, lease_bucket_config(config)).await?;
    js.get_key_value(config.leases.bucket.clone())
        .await
        .map_err(|e| {
            client(
                "ensure_lease_bucket",
                true,
                format!("open key-value bucket `{}`", config.leases.bucket),
                e,
            )
        })
}
