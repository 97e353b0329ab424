//! [`PersonalDataCodec`]: encrypts personal fields on encode, decrypts (or
//! marks erased) on decode, around any inner codec.

use std::sync::Arc;

use bytes::Bytes;
use orchestrix::codec::{Codec, JsonCodec};
use serde_json::Value;

use crate::crypto::{self, ERASED_TOKEN, Token};
use crate::error::{Action, Error, Result};
use crate::fields::{EventFields, PersonalFields};
use crate::personal::{erased_marker, is_erased};
use crate::vault::Vault;

/// A [`Codec`] that keeps personal fields encrypted in the stored bytes.
///
/// - **encode**: each marked field of the payload (see [`PersonalFields`]),
///   unless `null`, is encrypted with its data subject's key (created on first
///   use) into an `orx-pii:v1:` token (see [`crate::crypto`]); an erased
///   marker is written as `orx-pii:erased`. Then the inner codec encodes.
///   Encoding personal data of a forgotten subject fails with
///   [`Error::Forgotten`].
/// - **decode**: the inner codec decodes, then each marked field's token is
///   decrypted; if the subject was forgotten the field becomes the erased
///   marker `{"$erased": true}`, which [`Personal<T>`](crate::Personal)
///   deserializes as [`Personal::Erased`](crate::Personal::Erased).
///   A value that is not a token (written before the field was marked) is
///   left as it is.
///
/// Errors are typed: a ciphertext for a subject that the key store has never
/// seen is [`Error::UnknownKey`], one that fails authentication (tampered, or
/// another key) is [`Error::Tampered`]; both are permanent decode errors
/// (look them up with [`gdpr_error`](crate::gdpr_error)), not an erasure,
/// because they mean a wrong key store or corrupted data, and hiding that
/// behind the erased marker would make data loss look like a forget. Key
/// store failures keep their retry class.
///
/// The content type is the inner codec's: the stored bytes are ordinary JSON
/// (or Avro) in which personal fields are strings. Relays publish the stored
/// bytes, so ciphertext is what travels on the bus, and a consumer that
/// decodes with this codec sees erased fields after a forget.
#[derive(Debug, Clone)]
pub struct PersonalDataCodec {
    inner: Arc<dyn Codec>,
    vault: Vault,
    fields: Arc<PersonalFields>,
}

impl PersonalDataCodec {
    /// Around the JSON codec.
    #[must_use]
    pub fn json(vault: Vault, fields: PersonalFields) -> Self {
        Self::new(Arc::new(JsonCodec), vault, fields)
    }

    /// Around `inner` (e.g. `orchestrix-avro`'s codec; personal Avro fields
    /// must then be strings).
    #[must_use]
    pub fn new(inner: Arc<dyn Codec>, vault: Vault, fields: PersonalFields) -> Self {
        Self {
            inner,
            vault,
            fields: Arc::new(fields),
        }
    }

    /// The vault.
    #[must_use]
    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    /// The marked fields.
    #[must_use]
    pub fn fields(&self) -> &PersonalFields {
        &self.fields
    }

    /// Decodes a recorded event into a domain event with this codec: for
    /// consumers that get records without a [`Store`](orchestrix::Store)
    /// (bus consumers). With a store, use `Store::decode`.
    ///
    /// # Errors
    /// As [`Codec::decode`], and `E::from_payload`'s errors.
    pub fn decode_event<E: orchestrix::Event>(
        &self,
        event: &orchestrix::RecordedEvent,
    ) -> orchestrix::Result<E> {
        let r = &event.record;
        let value = self.decode(&r.event_type, r.schema_version, &r.data)?;
        E::from_payload(&r.event_type, value)
    }

    fn protect(&self, event_type: &str, fields: &EventFields, payload: &mut Value) -> Result<()> {
        // The key is fetched only once something needs encrypting; a missing
        // subject id is an error only then too.
        let id = fields.subject_of(event_type, payload).ok();
        let mut subject: Option<(&str, crypto::DataKey)> = None;
        for path in fields.personal() {
            path.visit_mut(payload, &mut |value| {
                if value.is_null() {
                    return Ok(());
                }
                if is_erased(value) {
                    *value = Value::String(ERASED_TOKEN.to_owned());
                    return Ok(());
                }
                if subject.is_none() {
                    let id = id.as_deref().ok_or_else(|| Error::MissingSubject {
                        event_type: event_type.to_owned(),
                        path: fields.subject().to_string(),
                    })?;
                    subject = Some((id, self.vault.key_for_write(id)?));
                }
                let Some((id, key)) = &subject else {
                    return Ok(());
                };
                *value = Value::String(crypto::seal(key, id, path.as_str(), value)?);
                Ok(())
            })?;
        }
        Ok(())
    }

    fn reveal(&self, fields: &EventFields, payload: &mut Value) -> Result<()> {
        for path in fields.personal() {
            path.visit_mut(payload, &mut |value| {
                let revealed = match crypto::parse(value, path.as_str())? {
                    None => return Ok(()),
                    Some(Token::Erased) => erased_marker(),
                    Some(Token::Sealed {
                        subject,
                        nonce,
                        ciphertext,
                    }) => match self.vault.key_for_read(subject)? {
                        Some(key) => {
                            crypto::open(&key, subject, path.as_str(), &nonce, &ciphertext)?
                        }
                        None => erased_marker(),
                    },
                };
                *value = revealed;
                Ok(())
            })?;
        }
        Ok(())
    }
}

fn what(event_type: &str, version: u32) -> String {
    format!("personal data of event `{event_type}` v{version}")
}

impl Codec for PersonalDataCodec {
    fn content_type(&self) -> &str {
        self.inner.content_type()
    }

    fn encode(&self, event_type: &str, version: u32, payload: &Value) -> orchestrix::Result<Bytes> {
        let Some(fields) = self.fields.get(event_type, version) else {
            return self.inner.encode(event_type, version, payload);
        };
        let mut protected = payload.clone();
        self.protect(event_type, fields, &mut protected)
            .map_err(|e| e.into_codec(Action::Encode, what(event_type, version)))?;
        self.inner.encode(event_type, version, &protected)
    }

    fn decode(&self, event_type: &str, version: u32, data: &[u8]) -> orchestrix::Result<Value> {
        let mut value = self.inner.decode(event_type, version, data)?;
        if let Some(fields) = self.fields.get(event_type, version) {
            self.reveal(fields, &mut value)
                .map_err(|e| e.into_codec(Action::Decode, what(event_type, version)))?;
        }
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::keystore::MemoryKeyStore;

    fn codec() -> PersonalDataCodec {
        let fields = PersonalFields::new()
            .event("t", "/id", ["/email", "/contacts/*/phone"])
            .unwrap();
        PersonalDataCodec::json(Vault::new(MemoryKeyStore::new()).unwrap(), fields)
    }

    #[test]
    fn encrypts_marked_fields_only_and_decrypts_them_back() {
        let codec = codec();
        let payload = json!({"id": "c-1", "email": "ada@example.com", "plan": "gold",
            "contacts": [{"phone": "+1 555"}, {"phone": null}]});
        let bytes = codec.encode("t", 1, &payload).unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(
            !text.contains("ada@example.com") && !text.contains("+1 555"),
            "{text}"
        );
        assert!(text.contains("gold") && text.contains("c-1"));
        assert_eq!(codec.decode("t", 1, &bytes).unwrap(), payload);
        // Other event types pass through.
        let other = codec.encode("u", 1, &json!({"email": "x"})).unwrap();
        assert_eq!(&other[..], br#"{"email":"x"}"#);
    }

    #[test]
    fn an_erased_marker_is_written_as_the_erased_token() {
        let codec = codec();
        let payload = json!({"id": "c-1", "email": {"$erased": true}});
        let bytes = codec.encode("t", 1, &payload).unwrap();
        let stored: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(stored, json!({"id": "c-1", "email": "orx-pii:erased"}));
        assert_eq!(codec.decode("t", 1, &bytes).unwrap(), payload);
    }

    #[test]
    fn no_subject_no_encryption() {
        let err = codec()
            .encode("t", 1, &json!({"email": "a@b"}))
            .unwrap_err();
        assert!(matches!(
            crate::gdpr_error(&err),
            Some(Error::MissingSubject { .. })
        ));
    }
}
