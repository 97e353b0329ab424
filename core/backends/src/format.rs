//! The value format of a bus URL: `format=json|avro` and its settings.
//!
//! Every program that takes `--bus` gets the format from the URL:
//!
//! ```text
//! kafka://127.0.0.1:9092?prefix=bank&format=avro&registry=http://127.0.0.1:8081
//! nats://127.0.0.1:4222?stream=BANK&format=avro&registry=http://registry:8081&subjects=topic-record&register=false
//! ```
//!
//! | key | values | default |
//! |---|---|---|
//! | `format` | `json` (the stored bytes), `avro` (Confluent wire format) | `json` |
//! | `registry` | URL of a Confluent-compatible schema registry (`orchestrix registry serve`, or Confluent's) | required with `avro` |
//! | `subjects` | `record` (`{namespace}.{name}`), `topic` (`{topic}-value`), `topic-record` | `record` |
//! | `register` | `true` registers unknown schemas on publish; `false` only looks them up (read-only production registries) | `true` |
//! | `schemas` | a directory of `.avsc` files, `{event type}.v{version}.avsc` | the application's own catalog |
//!
//! These keys are taken out before the rest of the URL goes to the bus
//! adapter, whose own parser refuses keys it does not know.
//!
//! ```
//! use orchestrix_backends::format::{BusFormat, FormatKind, split_format};
//! let (rest, format) = split_format(
//!     "kafka://127.0.0.1:9092?prefix=bank&format=avro&registry=http://127.0.0.1:8081&register=false",
//! )?;
//! assert_eq!(rest, "kafka://127.0.0.1:9092?prefix=bank");
//! assert_eq!(format.kind, FormatKind::Avro);
//! assert_eq!(format.registry.as_deref(), Some("http://127.0.0.1:8081"));
//! assert!(!format.register);
//! let (rest, format) = split_format("nats://127.0.0.1:4222")?;
//! assert_eq!((rest.as_str(), format), ("nats://127.0.0.1:4222", BusFormat::default()));
//! # Ok::<(), orchestrix::Error>(())
//! ```

use std::path::PathBuf;

use orchestrix::{Error, Result};

/// The payload format on the bus.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FormatKind {
    /// The stored bytes (JSON with the default codec).
    #[default]
    Json,
    /// Avro in the Confluent wire format, schema ids from a registry.
    Avro,
}

/// How subjects are named in the registry (Confluent's strategies).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Subjects {
    /// `{namespace}.{name}` of the record: many event types share a topic.
    #[default]
    RecordName,
    /// `{topic}-value`.
    TopicName,
    /// `{topic}-{namespace}.{name}`.
    TopicRecordName,
}

/// The format settings of a bus URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BusFormat {
    /// `format`.
    pub kind: FormatKind,
    /// `registry`.
    pub registry: Option<String>,
    /// `subjects`.
    pub subjects: Subjects,
    /// `register`.
    pub register: bool,
    /// `schemas`.
    pub schemas: Option<PathBuf>,
}

impl Default for BusFormat {
    fn default() -> Self {
        Self {
            kind: FormatKind::Json,
            registry: None,
            subjects: Subjects::RecordName,
            register: true,
            schemas: None,
        }
    }
}

const KEYS: [&str; 5] = ["format", "registry", "subjects", "register", "schemas"];

/// Splits a bus URL into the URL its adapter parses and the format settings.
///
/// # Errors
/// [`Error::InvalidInput`] for an unknown format or strategy, a bad boolean,
/// `format=avro` without `registry`, or format settings without
/// `format=avro`.
pub fn split_format(url: &str) -> Result<(String, BusFormat)> {
    let invalid = |reason: String| {
        Error::invalid(
            format!("bus URL `{}`", orchestrix::url::redact(url)),
            reason,
        )
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), BusFormat::default()));
    };
    let mut format = BusFormat::default();
    let mut kept = Vec::new();
    let mut settings = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        if !KEYS.contains(&key) {
            kept.push(pair);
            continue;
        }
        let value: String = url::form_urlencoded::parse(format!("v={raw}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        match key {
            "format" => {
                format.kind = match value.as_str() {
                    "json" => FormatKind::Json,
                    "avro" => FormatKind::Avro,
                    other => {
                        return Err(invalid(format!(
                            "`format={other}` is not one of json, avro"
                        )));
                    }
                };
            }
            "registry" => {
                settings = true;
                if !(value.starts_with("http://") || value.starts_with("https://")) {
                    return Err(invalid(format!("`registry={value}` is not an http(s) URL")));
                }
                format.registry = Some(value);
            }
            "subjects" => {
                settings = true;
                format.subjects = match value.as_str() {
                    "record" | "record-name" => Subjects::RecordName,
                    "topic" | "topic-name" => Subjects::TopicName,
                    "topic-record" | "topic-record-name" => Subjects::TopicRecordName,
                    other => {
                        return Err(invalid(format!(
                            "`subjects={other}` is not one of record, topic, topic-record"
                        )));
                    }
                };
            }
            "register" => {
                settings = true;
                format.register = match value.as_str() {
                    "true" | "1" | "on" => true,
                    "false" | "0" | "off" => false,
                    other => {
                        return Err(invalid(format!("`register={other}` is not true or false")));
                    }
                };
            }
            _ => {
                settings = true;
                format.schemas = Some(PathBuf::from(value));
            }
        }
    }
    match format.kind {
        FormatKind::Avro if format.registry.is_none() => {
            return Err(invalid(
                "`format=avro` needs `registry=URL` (a Confluent-compatible schema registry)"
                    .into(),
            ));
        }
        FormatKind::Json if settings => {
            return Err(invalid(
                "`registry`, `subjects`, `register` and `schemas` go with `format=avro`".into(),
            ));
        }
        _ => {}
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((rest, format))
}

/// Builds the Avro value format a URL asks for (feature `avro`), over the
/// registry at `format.registry` with the event schemas of `schemas` (or
/// those of the `schemas=` directory); `None` for `format=json`.
///
/// # Errors
/// [`Error::InvalidInput`] when no schema catalog is given, the directory
/// cannot be loaded, or the registry URL is invalid.
#[cfg(feature = "avro")]
pub fn value_format(
    format: &BusFormat,
    schemas: Option<orchestrix_avro::AvroSchemas>,
) -> Result<Option<std::sync::Arc<dyn orchestrix::wire::ValueFormat>>> {
    use std::sync::Arc;

    use orchestrix_avro::wire::SubjectStrategy;
    use orchestrix_schema_registry::{AvroWireFormat, ConfluentAvro, RegistryClient};

    if format.kind == FormatKind::Json {
        return Ok(None);
    }
    let invalid = |reason: String| Error::invalid("bus format `avro`", reason);
    let catalog = match (&format.schemas, schemas) {
        (Some(dir), _) => orchestrix_avro::AvroSchemas::load_dir(dir)
            .map_err(|e| invalid(format!("schemas from `{}`: {e}", dir.display())))?,
        (None, Some(catalog)) => catalog,
        (None, None) => {
            return Err(invalid(
                "no Avro schemas: give `schemas=DIR` in the bus URL or the application's catalog"
                    .into(),
            ));
        }
    };
    let registry = format.registry.as_deref().unwrap_or_default();
    let client = RegistryClient::new(registry)
        .map_err(|e| invalid(format!("registry `{registry}`: {e}")))?;
    let strategy = match format.subjects {
        Subjects::RecordName => SubjectStrategy::RecordName,
        Subjects::TopicName => SubjectStrategy::TopicName,
        Subjects::TopicRecordName => SubjectStrategy::TopicRecordName,
    };
    let confluent = ConfluentAvro::new(Arc::new(client), orchestrix_avro::AvroCodec::new(catalog))
        .with_strategy(strategy)
        .with_auto_register(format.register);
    Ok(Some(Arc::new(AvroWireFormat::new(confluent))))
}

/// Without the `avro` feature, `format=avro` names the missing feature.
///
/// # Errors
/// [`Error::FeatureNotEnabled`] for `format=avro`.
#[cfg(not(feature = "avro"))]
pub fn value_format(
    format: &BusFormat,
    _schemas: Option<()>,
) -> Result<Option<std::sync::Arc<dyn orchestrix::wire::ValueFormat>>> {
    match format.kind {
        FormatKind::Json => Ok(None),
        FormatKind::Avro => Err(Error::FeatureNotEnabled {
            scheme: "format=avro".to_owned(),
            feature: "avro",
            krate: "orchestrix-backends",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_keys_are_taken_out_and_the_rest_kept_in_order() {
        let (rest, f) = split_format(
            "kafka://a:9092,b:9092?prefix=bank&format=avro&partitions=6&registry=http%3A%2F%2Freg%3A8081&subjects=topic-record&schemas=schemas%2Fbank",
        )
        .unwrap();
        assert_eq!(rest, "kafka://a:9092,b:9092?prefix=bank&partitions=6");
        assert_eq!(f.kind, FormatKind::Avro);
        assert_eq!(f.registry.as_deref(), Some("http://reg:8081"));
        assert_eq!(f.subjects, Subjects::TopicRecordName);
        assert!(f.register);
        assert_eq!(f.schemas, Some(PathBuf::from("schemas/bank")));
    }

    #[test]
    fn bad_format_settings_are_refused_with_the_reason() {
        for (url, why) in [
            ("kafka://a:9092?format=protobuf", "not one of json, avro"),
            ("kafka://a:9092?format=avro", "needs `registry=URL`"),
            (
                "nats://n:4222?registry=http://r:8081",
                "go with `format=avro`",
            ),
            (
                "kafka://a:9092?format=avro&registry=http://r&register=maybe",
                "not true or false",
            ),
            (
                "kafka://a:9092?format=avro&registry=ftp://r",
                "not an http(s) URL",
            ),
            (
                "kafka://a:9092?format=avro&registry=http://r&subjects=name",
                "not one of record, topic, topic-record",
            ),
        ] {
            let err = split_format(url).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{url}: {err}");
            assert!(err.to_string().contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn json_needs_nothing_and_builds_no_format() {
        let (rest, f) = split_format("nats://n:4222?stream=BANK&format=json").unwrap();
        assert_eq!(rest, "nats://n:4222?stream=BANK");
        assert!(value_format(&f, None).unwrap().is_none());
    }
}
