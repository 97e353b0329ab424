//! [`Gdpr`]: the codec to give the store, and `forget` with its audit event.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use orchestrix::codec::Codec;
use orchestrix::{EventRecord, ExpectedRevision, Store, StreamId};
use serde::{Deserialize, Serialize};

use crate::codec::PersonalDataCodec;
use crate::error::{Error, Result};
use crate::fields::PersonalFields;
use crate::vault::Vault;

/// The default category of audit streams: `gdpr-{subject}`.
pub const DEFAULT_AUDIT_CATEGORY: &str = "gdpr";

/// The events this crate writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, orchestrix::Event)]
#[event(prefix = "orchestrix.gdpr")]
pub enum GdprEvent {
    /// `orchestrix.gdpr.SubjectForgotten`: a forget request was carried out.
    SubjectForgotten {
        /// The data subject.
        subject: String,
        /// Who asked (a person or a system), for the audit trail.
        requested_by: String,
        /// Why (e.g. "GDPR Art. 17 request #123"); no personal data here.
        reason: String,
        /// When the key was destroyed.
        at: DateTime<Utc>,
        /// Whether a key existed (`false`: it had none, or it was already
        /// forgotten).
        key_destroyed: bool,
    },
}

/// A request to forget a data subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForgetRequest {
    /// The data subject.
    pub subject: String,
    /// Who asked.
    pub requested_by: String,
    /// Why.
    pub reason: String,
}

impl ForgetRequest {
    /// A request to forget `subject`.
    #[must_use]
    pub fn new(subject: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            requested_by: String::new(),
            reason: String::new(),
        }
    }

    /// Who asked.
    #[must_use]
    pub fn requested_by(mut self, who: impl Into<String>) -> Self {
        self.requested_by = who.into();
        self
    }

    /// Why.
    #[must_use]
    pub fn reason(mut self, reason: impl Into<String>) -> Self {
        self.reason = reason.into();
        self
    }
}

/// What a forget did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forgotten {
    /// The audit event written.
    pub event: GdprEvent,
    /// The audit stream it was written to.
    pub stream: StreamId,
    /// Its global position.
    pub position: u64,
}

/// Crypto-shredding for one application: the codec to give its store, and
/// [`forget`](Self::forget).
///
/// ```
/// use orchestrix::{Store, StreamId, ExpectedRevision, EventRecord};
/// use orchestrix_gdpr::{ForgetRequest, Gdpr, Personal, PersonalFields, Vault};
/// use orchestrix_gdpr::keystore::MemoryKeyStore;
/// use serde_json::json;
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let fields = PersonalFields::new()
///     .event("com.acme.CustomerRegistered", "/customer_id", ["/email"])?;
/// let gdpr = Gdpr::new(Vault::new(MemoryKeyStore::new())?, fields);
/// let store = Store::memory().with_codec(gdpr.codec());
///
/// // Write through the codec, as the command executor does.
/// let payload = json!({"customer_id": "c-1", "email": "ada@example.com"});
/// let data = store.codec().encode("com.acme.CustomerRegistered", 1, &payload)?;
/// let mut record = EventRecord::json("com.acme.CustomerRegistered", 1, &payload);
/// record.data = data;
/// let stream = StreamId::parse("customer-c-1")?;
/// store.append(&stream, ExpectedRevision::NoStream, vec![record]).await?;
///
/// let stored = store.read_stream_forward(&stream, 0, 10).await?;
/// assert!(!String::from_utf8_lossy(&stored[0].record.data).contains("ada@")); // ciphertext at rest
/// let read = store.codec().decode("com.acme.CustomerRegistered", 1, &stored[0].record.data)?;
/// assert_eq!(read["email"], "ada@example.com");                              // plaintext on read
///
/// gdpr.forget(&store, ForgetRequest::new("c-1").requested_by("dpo@acme.example").reason("Art. 17")).await?;
/// let read = store.codec().decode("com.acme.CustomerRegistered", 1, &stored[0].record.data)?;
/// let email: Personal<String> = serde_json::from_value(read["email"].clone())?;
/// assert_eq!(email, Personal::Erased);                                        // erased, not a crash
/// assert_eq!(read["customer_id"], "c-1");                                     // the rest intact
/// # Ok::<(), anyhow::Error>(()) }).unwrap();
/// ```
#[derive(Debug, Clone)]
pub struct Gdpr {
    codec: PersonalDataCodec,
    audit_category: String,
}

impl Gdpr {
    /// Marked `fields`, keys in `vault`, payloads in JSON.
    #[must_use]
    pub fn new(vault: Vault, fields: PersonalFields) -> Self {
        Self {
            codec: PersonalDataCodec::json(vault, fields),
            audit_category: DEFAULT_AUDIT_CATEGORY.to_owned(),
        }
    }

    /// Encodes payloads with `inner` (e.g. the Avro codec) under the
    /// encryption.
    #[must_use]
    pub fn with_inner_codec(mut self, inner: Arc<dyn Codec>) -> Self {
        self.codec = PersonalDataCodec::new(
            inner,
            self.codec.vault().clone(),
            self.codec.fields().clone(),
        );
        self
    }

    /// Writes audit events to `{category}-{subject}` instead of
    /// `gdpr-{subject}`.
    ///
    /// # Errors
    /// [`Error::Config`] for a category that stream ids do not allow.
    pub fn with_audit_category(mut self, category: &str) -> Result<Self> {
        StreamId::parse(format!("{category}-x"))
            .map_err(|e| Error::config(format!("audit category `{category}`"), e.to_string()))?;
        category.clone_into(&mut self.audit_category);
        Ok(self)
    }

    /// The codec to give the store: `Store::with_codec(gdpr.codec())`, and to
    /// bus consumers that decode relayed events.
    #[must_use]
    pub fn codec(&self) -> Arc<dyn Codec> {
        Arc::new(self.codec.clone())
    }

    /// The codec, typed.
    #[must_use]
    pub fn personal_data_codec(&self) -> &PersonalDataCodec {
        &self.codec
    }

    /// The vault.
    #[must_use]
    pub fn vault(&self) -> &Vault {
        self.codec.vault()
    }

    /// The audit stream of `subject`.
    ///
    /// # Errors
    /// [`Error::Store`] when the subject id is not allowed in a stream id.
    pub fn audit_stream(&self, subject: &str) -> Result<StreamId> {
        Ok(StreamId::parse(format!(
            "{}-{subject}",
            self.audit_category
        ))?)
    }

    /// Forgets a data subject: destroys its key (in the key store and this
    /// process's cache), then appends `orchestrix.gdpr.SubjectForgotten` to
    /// its audit stream in `store`. From then on every reader that decodes
    /// with this codec (aggregate loads, projections and their rebuilds, bus
    /// consumers) sees its personal fields erased.
    ///
    /// Idempotent: when the append fails after the key was destroyed, call it
    /// again to complete the audit trail (the event then says
    /// `key_destroyed: false`).
    ///
    /// Not reached by a forget: read models and snapshots that already hold
    /// the plaintext (rebuild them, or have them react to `SubjectForgotten`),
    /// and copies of the key store in backups.
    ///
    /// # Errors
    /// [`Error::Store`] for a subject id not allowed in a stream id (nothing
    /// is destroyed then) or a failed append; [`Error::KeyStore`].
    pub async fn forget(&self, store: &Store, request: ForgetRequest) -> Result<Forgotten> {
        let stream = self.audit_stream(&request.subject)?;
        let key_destroyed = self.vault().forget(&request.subject).await?;
        let event = GdprEvent::SubjectForgotten {
            subject: request.subject,
            requested_by: request.requested_by,
            reason: request.reason,
            at: Utc::now(),
            key_destroyed,
        };
        let payload = orchestrix::Event::to_payload(&event)?;
        let mut record = EventRecord::json(
            orchestrix::Event::event_type(&event),
            orchestrix::Event::schema_version(&event),
            &payload,
        );
        "/orchestrix/gdpr".clone_into(&mut record.source);
        let appended = store
            .append(&stream, ExpectedRevision::Any, vec![record])
            .await?;
        tracing::info!(stream = %stream, key_destroyed, "data subject forgotten");
        Ok(Forgotten {
            event,
            stream,
            position: appended.last_position,
        })
    }
}
