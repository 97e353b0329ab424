//! Data keys and the token that an encrypted field value is stored as.
//!
//! A personal field value is serialized to JSON, encrypted with AES-256-GCM
//! under its data subject's key with a fresh random 96-bit nonce, and stored
//! as one string:
//!
//! ```text
//! orx-pii:v1:{nonce, base64url}:{ciphertext+tag, base64url}:{subject}
//! ```
//!
//! The subject comes last, so it may contain `:`. The additional
//! authenticated data is `orx-pii:v1`, the subject and the field's pointer,
//! so a ciphertext moved to another subject or another field fails
//! authentication. A string fits any schema whose personal fields are
//! strings (Avro included), which a tagged JSON object would not.
//!
//! A field that was already erased when it was written again (an upcaster
//! re-encoding an event of a forgotten subject) is stored as `orx-pii:erased`.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore as _;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// The length of a data key: AES-256.
pub const KEY_LEN: usize = 32;
/// The length of a nonce: 96 bits, as GCM wants.
pub const NONCE_LEN: usize = 12;
/// Every stored personal value starts with this.
pub const TOKEN_PREFIX: &str = "orx-pii:";
const V1: &str = "orx-pii:v1:";
/// The stored form of a value that was erased when it was written.
pub const ERASED_TOKEN: &str = "orx-pii:erased";

/// A data subject's 256-bit key. Its bytes are wiped from memory on drop and
/// never printed.
#[derive(Clone)]
pub struct DataKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DataKey(..)")
    }
}

impl DataKey {
    /// A new key from the operating system's random number generator.
    ///
    /// # Errors
    /// [`Error::Entropy`] when the OS has no randomness to give.
    pub fn generate() -> Result<Self> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        random(&mut *bytes)?;
        Ok(Self(bytes))
    }

    /// A key from stored bytes.
    ///
    /// # Errors
    /// [`Error::Config`] unless there are exactly 32 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self> {
        let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::config(
                "data key",
                format!("{} bytes, expected {KEY_LEN}", bytes.len()),
            )
        })?;
        Ok(Self(Zeroizing::new(array)))
    }

    /// The key's bytes, for a key store to keep.
    #[must_use]
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(self.0.as_ref().into())
    }
}

fn random(buf: &mut [u8]) -> Result<()> {
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|e| Error::Entropy(Box::new(e)))
}

fn aad(subject: &str, path: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(V1.len() + subject.len() + path.len() + 2);
    aad.extend_from_slice(V1.as_bytes());
    aad.extend_from_slice(subject.as_bytes());
    aad.push(0);
    aad.extend_from_slice(path.as_bytes());
    aad
}

/// Encrypts one field value into its token.
pub(crate) fn seal(
    key: &DataKey,
    subject: &str,
    path: &str,
    value: &serde_json::Value,
) -> Result<String> {
    let plaintext = Zeroizing::new(serde_json::to_vec(value).map_err(|e| Error::Malformed {
        path: path.to_owned(),
        reason: e.to_string(),
    })?);
    let mut nonce = [0u8; NONCE_LEN];
    random(&mut nonce)?;
    let ciphertext = key
        .cipher()
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plaintext,
                aad: &aad(subject, path),
            },
        )
        .map_err(|_| Error::Malformed {
            path: path.to_owned(),
            reason: "value too large to encrypt".to_owned(),
        })?;
    Ok(format!(
        "{V1}{}:{}:{subject}",
        URL_SAFE_NO_PAD.encode(nonce),
        URL_SAFE_NO_PAD.encode(ciphertext)
    ))
}

/// A parsed stored personal value.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Token<'a> {
    /// Ciphertext under `subject`'s key.
    Sealed {
        subject: &'a str,
        nonce: [u8; NONCE_LEN],
        ciphertext: Vec<u8>,
    },
    /// Erased when it was written.
    Erased,
}

/// Parses a stored value; `None` when it is not a token at all (plaintext
/// written before the field was marked personal).
pub(crate) fn parse<'v>(value: &'v serde_json::Value, path: &str) -> Result<Option<Token<'v>>> {
    let Some(text) = value.as_str() else {
        return Ok(None);
    };
    if !text.starts_with(TOKEN_PREFIX) {
        return Ok(None);
    }
    if text == ERASED_TOKEN {
        return Ok(Some(Token::Erased));
    }
    let malformed = |reason: &str| Error::Malformed {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let rest = text
        .strip_prefix(V1)
        .ok_or_else(|| malformed("unknown token version (this build reads `orx-pii:v1`)"))?;
    let mut parts = rest.splitn(3, ':');
    let (Some(nonce), Some(ciphertext), Some(subject)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed(
            "expected `orx-pii:v1:{nonce}:{ciphertext}:{subject}`",
        ));
    };
    let nonce: [u8; NONCE_LEN] = URL_SAFE_NO_PAD
        .decode(nonce)
        .ok()
        .and_then(|n| n.try_into().ok())
        .ok_or_else(|| malformed("the nonce is not 12 bytes of base64url"))?;
    let ciphertext = URL_SAFE_NO_PAD
        .decode(ciphertext)
        .map_err(|_| malformed("the ciphertext is not base64url"))?;
    if subject.is_empty() {
        return Err(malformed("no data subject"));
    }
    Ok(Some(Token::Sealed {
        subject,
        nonce,
        ciphertext,
    }))
}

/// Decrypts a sealed value.
pub(crate) fn open(
    key: &DataKey,
    subject: &str,
    path: &str,
    nonce: &[u8; NONCE_LEN],
    ciphertext: &[u8],
) -> Result<serde_json::Value> {
    let plaintext = Zeroizing::new(
        key.cipher()
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: &aad(subject, path),
                },
            )
            .map_err(|_| Error::Tampered {
                subject: subject.to_owned(),
                path: path.to_owned(),
            })?,
    );
    serde_json::from_slice(&plaintext).map_err(|e| Error::Malformed {
        path: path.to_owned(),
        reason: format!("decrypted value is not JSON: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn seal_then_open_round_trips_and_binds_subject_and_path() {
        let key = DataKey::generate().unwrap();
        let token = seal(&key, "c:1", "/email", &json!("a@b.c")).unwrap();
        assert!(token.starts_with("orx-pii:v1:") && token.ends_with(":c:1"));
        assert!(!token.contains("a@b.c"));
        let value = json!(token);
        let Some(Token::Sealed {
            subject,
            nonce,
            ciphertext,
        }) = parse(&value, "/email").unwrap()
        else {
            panic!("not sealed");
        };
        assert_eq!(subject, "c:1");
        assert_eq!(
            open(&key, subject, "/email", &nonce, &ciphertext).unwrap(),
            json!("a@b.c")
        );
        assert!(matches!(
            open(&key, subject, "/name", &nonce, &ciphertext),
            Err(Error::Tampered { .. })
        ));
        let other = DataKey::generate().unwrap();
        assert!(matches!(
            open(&other, subject, "/email", &nonce, &ciphertext),
            Err(Error::Tampered { .. })
        ));
    }

    #[test]
    fn two_seals_of_one_value_differ() {
        let key = DataKey::generate().unwrap();
        let a = seal(&key, "s", "/x", &json!(1)).unwrap();
        let b = seal(&key, "s", "/x", &json!(1)).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn parse_tells_plaintext_erased_and_malformed_apart() {
        assert_eq!(parse(&json!("hello"), "/x").unwrap(), None);
        assert_eq!(parse(&json!(3), "/x").unwrap(), None);
        assert_eq!(
            parse(&json!(ERASED_TOKEN), "/x").unwrap(),
            Some(Token::Erased)
        );
        for bad in [
            "orx-pii:v9:a:b:c",
            "orx-pii:v1:abc",
            "orx-pii:v1:AAAA:AAAA:s",
        ] {
            assert!(
                matches!(parse(&json!(bad), "/x"), Err(Error::Malformed { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn keys_are_32_bytes_and_not_printed() {
        assert!(DataKey::from_bytes(&[0; 31]).is_err());
        let key = DataKey::from_bytes(&[7; 32]).unwrap();
        assert_eq!(format!("{key:?}"), "DataKey(..)");
    }
}
