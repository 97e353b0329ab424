//! The CloudEvents 1.0 envelope: validated attributes and the JSON event format.

use std::collections::BTreeMap;

use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::event::{EventRecord, Metadata, RecordedEvent};
use crate::id::StreamId;

/// The only CloudEvents spec version written and accepted.
pub const SPEC_VERSION: &str = "1.0";

/// Extension: partition key (CloudEvents Partitioning extension).
pub const EXT_PARTITION_KEY: &str = "partitionkey";
/// Extension: W3C trace parent (Distributed Tracing extension).
pub const EXT_TRACEPARENT: &str = "traceparent";
/// Extension: W3C trace state.
pub const EXT_TRACESTATE: &str = "tracestate";
/// Extension: correlation id.
pub const EXT_CORRELATION_ID: &str = "correlationid";
/// Extension: causation id.
pub const EXT_CAUSATION_ID: &str = "causationid";
/// Extension: revision of the event in its stream.
pub const EXT_STREAM_REVISION: &str = "streamrevision";
/// Extension: global position of the event in the store.
pub const EXT_GLOBAL_POSITION: &str = "globalposition";
/// Extension: schema version of the payload.
pub const EXT_SCHEMA_VERSION: &str = "schemaversion";

const RESERVED: &[&str] = &[
    "id",
    "source",
    "specversion",
    "type",
    "datacontenttype",
    "dataschema",
    "subject",
    "time",
    "data",
    "data_base64",
];

/// The data of a CloudEvent.
#[derive(Debug, Clone, PartialEq)]
pub enum Data {
    /// A JSON value (`data` in the JSON format).
    Json(Value),
    /// Binary data (`data_base64` in the JSON format).
    Binary(Bytes),
}

/// An extension attribute value (CloudEvents type system, as far as the JSON
/// format can tell types apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExtensionValue {
    /// String (also URI, URI-reference, Timestamp in their string form).
    String(String),
    /// Integer (32-bit signed in the spec; we accept 64-bit and keep it).
    Integer(i64),
    /// Boolean.
    Boolean(bool),
}

impl ExtensionValue {
    /// The canonical string form (what binary-mode headers carry).
    #[must_use]
    pub fn to_header_value(&self) -> String {
        match self {
            Self::String(s) => s.clone(),
            Self::Integer(i) => i.to_string(),
            Self::Boolean(b) => b.to_string(),
        }
    }
}

/// A validated CloudEvents 1.0 event.
///
/// ```
/// use orchestrix::cloudevent::{CloudEvent, Data};
/// let ce = CloudEvent::builder("0191b2b0-0000-7000-8000-000000000001", "/bank", "com.acme.bank.Opened")
///     .subject("account-1")
///     .extension("correlationid", "c-1")?
///     .data("application/json", Data::Json(serde_json::json!({"owner": "Ann"})))
///     .build()?;
/// let json = ce.to_json();
/// assert_eq!(json["specversion"], "1.0");
/// assert_eq!(CloudEvent::from_json(&json)?, ce);
/// assert!(CloudEvent::builder("1", "", "t").build().is_err()); // empty source
/// assert!(CloudEvent::builder("1", "/s", "t").extension("Bad-Name", "x").is_err());
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEvent {
    id: String,
    source: String,
    ty: String,
    time: Option<DateTime<Utc>>,
    subject: Option<String>,
    datacontenttype: Option<String>,
    dataschema: Option<String>,
    extensions: BTreeMap<String, ExtensionValue>,
    data: Option<Data>,
}

/// Builds a [`CloudEvent`]; [`build`](CloudEventBuilder::build) validates.
#[derive(Debug, Clone)]
pub struct CloudEventBuilder {
    event: CloudEvent,
}

impl CloudEventBuilder {
    /// Sets `time`.
    #[must_use]
    pub fn time(mut self, time: DateTime<Utc>) -> Self {
        self.event.time = Some(time);
        self
    }

    /// Sets `subject`.
    #[must_use]
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.event.subject = Some(subject.into());
        self
    }

    /// Sets `dataschema` (an absolute URI).
    #[must_use]
    pub fn dataschema(mut self, uri: impl Into<String>) -> Self {
        self.event.dataschema = Some(uri.into());
        self
    }

    /// Sets `datacontenttype` and the data.
    #[must_use]
    pub fn data(mut self, content_type: impl Into<String>, data: Data) -> Self {
        self.event.datacontenttype = Some(content_type.into());
        self.event.data = Some(data);
        self
    }

    /// Adds a string extension attribute.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a name that is not lowercase ASCII letters
    /// and digits, or that is a context attribute's name.
    pub fn extension(mut self, name: &str, value: impl Into<String>) -> Result<Self> {
        validate_extension_name(name)?;
        self.event
            .extensions
            .insert(name.to_owned(), ExtensionValue::String(value.into()));
        Ok(self)
    }

    /// Adds an extension attribute of any type.
    ///
    /// # Errors
    /// As [`extension`](Self::extension).
    pub fn extension_value(mut self, name: &str, value: ExtensionValue) -> Result<Self> {
        validate_extension_name(name)?;
        self.event.extensions.insert(name.to_owned(), value);
        Ok(self)
    }

    /// Validates and returns the event.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the offending attribute.
    pub fn build(self) -> Result<CloudEvent> {
        self.event.validate()?;
        Ok(self.event)
    }
}

fn attr_error(attr: &str, reason: impl Into<String>) -> Error {
    Error::invalid(format!("CloudEvents attribute `{attr}`"), reason)
}

/// Checks a CloudEvents extension attribute name: 1 to 20 lowercase ASCII letters
/// or digits, and not a context attribute's name.
///
/// # Errors
/// [`Error::InvalidInput`].
pub fn validate_extension_name(name: &str) -> Result<()> {
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
    {
        return Err(attr_error(
            name,
            "extension names are lowercase ASCII letters and digits",
        ));
    }
    if name.len() > 20 {
        return Err(attr_error(
            name,
            "extension names are at most 20 characters",
        ));
    }
    if RESERVED.contains(&name) {
        return Err(attr_error(name, "is a context attribute, not an extension"));
    }
    Ok(())
}

fn validate_uri_reference(attr: &str, value: &str) -> Result<()> {
    if value.is_empty() {
        return Err(attr_error(attr, "must be a non-empty URI-reference"));
    }
    if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(attr_error(
            attr,
            "a URI-reference has no whitespace or control characters",
        ));
    }
    Ok(())
}

impl CloudEvent {
    /// Starts a builder with the required attributes.
    pub fn builder(
        id: impl Into<String>,
        source: impl Into<String>,
        ty: impl Into<String>,
    ) -> CloudEventBuilder {
        CloudEventBuilder {
            event: Self {
                id: id.into(),
                source: source.into(),
                ty: ty.into(),
                time: None,
                subject: None,
                datacontenttype: None,
                dataschema: None,
                extensions: BTreeMap::new(),
                data: None,
            },
        }
    }

    fn validate(&self) -> Result<()> {
        if self.id.is_empty() {
            return Err(attr_error("id", "must be a non-empty string"));
        }
        validate_uri_reference("source", &self.source)?;
        if self.ty.is_empty() {
            return Err(attr_error("type", "must be a non-empty string"));
        }
        if let Some(subject) = &self.subject
            && subject.is_empty()
        {
            return Err(attr_error("subject", "must be non-empty when present"));
        }
        if let Some(schema) = &self.dataschema {
            let parsed = url::Url::parse(schema)
                .map_err(|e| attr_error("dataschema", format!("must be an absolute URI: {e}")))?;
            if parsed.scheme().is_empty() {
                return Err(attr_error("dataschema", "must be an absolute URI"));
            }
        }
        if let Some(ct) = &self.datacontenttype
            && (ct.is_empty() || !ct.contains('/'))
        {
            return Err(attr_error(
                "datacontenttype",
                format!("`{ct}` is not a media type"),
            ));
        }
        for name in self.extensions.keys() {
            validate_extension_name(name)?;
        }
        Ok(())
    }

    /// `id`.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
    /// `source`.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }
    /// `type`.
    #[must_use]
    pub fn ty(&self) -> &str {
        &self.ty
    }
    /// `time`.
    #[must_use]
    pub fn time(&self) -> Option<DateTime<Utc>> {
        self.time
    }
    /// `subject`.
    #[must_use]
    pub fn subject(&self) -> Option<&str> {
        self.subject.as_deref()
    }
    /// `datacontenttype`.
    #[must_use]
    pub fn datacontenttype(&self) -> Option<&str> {
        self.datacontenttype.as_deref()
    }
    /// `dataschema`.
    #[must_use]
    pub fn dataschema(&self) -> Option<&str> {
        self.dataschema.as_deref()
    }
    /// The data.
    #[must_use]
    pub fn data(&self) -> Option<&Data> {
        self.data.as_ref()
    }
    /// All extension attributes.
    #[must_use]
    pub fn extensions(&self) -> &BTreeMap<String, ExtensionValue> {
        &self.extensions
    }
    /// One extension attribute in its string form.
    #[must_use]
    pub fn extension(&self, name: &str) -> Option<String> {
        self.extensions
            .get(name)
            .map(ExtensionValue::to_header_value)
    }

    /// The data as bytes, as carried by binary content mode (JSON data is
    /// serialized).
    #[must_use]
    pub fn data_bytes(&self) -> Bytes {
        match &self.data {
            None => Bytes::new(),
            Some(Data::Binary(b)) => b.clone(),
            Some(Data::Json(v)) => Bytes::from(v.to_string()),
        }
    }

    /// Serializes to the CloudEvents JSON format.
    #[must_use]
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        m.insert("specversion".into(), SPEC_VERSION.into());
        m.insert("id".into(), self.id.clone().into());
        m.insert("source".into(), self.source.clone().into());
        m.insert("type".into(), self.ty.clone().into());
        if let Some(t) = self.time {
            m.insert(
                "time".into(),
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
                    .into(),
            );
        }
        if let Some(s) = &self.subject {
            m.insert("subject".into(), s.clone().into());
        }
        if let Some(s) = &self.datacontenttype {
            m.insert("datacontenttype".into(), s.clone().into());
        }
        if let Some(s) = &self.dataschema {
            m.insert("dataschema".into(), s.clone().into());
        }
        for (k, v) in &self.extensions {
            let v = match v {
                ExtensionValue::String(s) => Value::from(s.clone()),
                ExtensionValue::Integer(i) => Value::from(*i),
                ExtensionValue::Boolean(b) => Value::from(*b),
            };
            m.insert(k.clone(), v);
        }
        match &self.data {
            None => {}
            Some(Data::Json(v)) => {
                m.insert("data".into(), v.clone());
            }
            Some(Data::Binary(b)) => {
                m.insert("data_base64".into(), base64_encode(b).into());
            }
        }
        Value::Object(m)
    }

    /// Parses and validates the CloudEvents JSON format.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] naming the missing or malformed attribute.
    pub fn from_json(value: &Value) -> Result<Self> {
        let Value::Object(m) = value else {
            return Err(Error::invalid("CloudEvent", "the JSON format is an object"));
        };
        let string = |name: &str| -> Result<Option<String>> {
            match m.get(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(other) => Err(attr_error(name, format!("must be a string, got {other}"))),
            }
        };
        let required = |name: &str| -> Result<String> {
            string(name)?.ok_or_else(|| attr_error(name, "is required"))
        };
        let spec = required("specversion")?;
        if spec != SPEC_VERSION {
            return Err(attr_error(
                "specversion",
                format!("`{spec}` is not supported (only 1.0)"),
            ));
        }
        let time = string("time")?
            .map(|t| {
                DateTime::parse_from_rfc3339(&t)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|e| {
                        attr_error("time", format!("`{t}` is not an RFC 3339 timestamp: {e}"))
                    })
            })
            .transpose()?;
        let data = match (m.get("data"), m.get("data_base64")) {
            (Some(_), Some(_)) => {
                return Err(attr_error(
                    "data",
                    "`data` and `data_base64` are mutually exclusive",
                ));
            }
            (Some(v), None) => Some(Data::Json(v.clone())),
            (None, Some(Value::String(b))) => Some(Data::Binary(Bytes::from(
                base64_decode(b).map_err(|e| attr_error("data_base64", e))?,
            ))),
            (None, Some(_)) => return Err(attr_error("data_base64", "must be a base64 string")),
            (None, None) => None,
        };
        let mut extensions = BTreeMap::new();
        for (k, v) in m {
            if RESERVED.contains(&k.as_str()) {
                continue;
            }
            validate_extension_name(k)?;
            let v = match v {
                Value::String(s) => ExtensionValue::String(s.clone()),
                Value::Bool(b) => ExtensionValue::Boolean(*b),
                Value::Number(n) if n.is_i64() => {
                    ExtensionValue::Integer(n.as_i64().unwrap_or_default())
                }
                other => {
                    return Err(attr_error(
                        k,
                        format!("extension values are strings, integers or booleans, got {other}"),
                    ));
                }
            };
            extensions.insert(k.clone(), v);
        }
        let event = Self {
            id: required("id")?,
            source: required("source")?,
            ty: required("type")?,
            time,
            subject: string("subject")?,
            datacontenttype: string("datacontenttype")?,
            dataschema: string("dataschema")?,
            extensions,
            data,
        };
        event.validate()?;
        Ok(event)
    }

    /// The envelope of a stored event: subject = stream id, `partitionkey` =
    /// stream id, `dataschema` names type and version, and the causal, trace and
    /// position extensions.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when stored metadata is not a valid CloudEvent
    /// (e.g. an empty source).
    pub fn from_recorded(event: &RecordedEvent) -> Result<Self> {
        let r = &event.record;
        let data = if crate::codec::is_json(&r.content_type) {
            match serde_json::from_slice(&r.data) {
                Ok(v) => Data::Json(v),
                Err(_) => Data::Binary(r.data.clone()),
            }
        } else {
            Data::Binary(r.data.clone())
        };
        Self::from_recorded_with(event, data)
    }

    /// [`from_recorded`](Self::from_recorded) with the stored bytes kept as
    /// they are ([`Data::Binary`], `datacontenttype` unchanged): what binary
    /// content mode sends as the body, without parsing and re-serializing JSON.
    ///
    /// # Errors
    /// As [`from_recorded`](Self::from_recorded).
    pub fn from_recorded_opaque(event: &RecordedEvent) -> Result<Self> {
        Self::from_recorded_with(event, Data::Binary(event.record.data.clone()))
    }

    fn from_recorded_with(event: &RecordedEvent, data: Data) -> Result<Self> {
        let r = &event.record;
        let mut b = Self::builder(r.id.to_string(), r.source.clone(), r.event_type.clone())
            .time(r.time)
            .subject(event.stream_id.as_str())
            .dataschema(schema_uri(&r.event_type, r.schema_version))
            .data(r.content_type.clone(), data)
            .extension(EXT_PARTITION_KEY, event.stream_id.as_str())?
            .extension_value(
                EXT_STREAM_REVISION,
                ExtensionValue::Integer(to_i64(event.revision)),
            )?
            .extension_value(
                EXT_GLOBAL_POSITION,
                ExtensionValue::Integer(to_i64(event.position)),
            )?
            .extension_value(
                EXT_SCHEMA_VERSION,
                ExtensionValue::Integer(i64::from(r.schema_version)),
            )?;
        let md = &r.metadata;
        for (name, value) in [
            (EXT_CORRELATION_ID, &md.correlation_id),
            (EXT_CAUSATION_ID, &md.causation_id),
            (EXT_TRACEPARENT, &md.traceparent),
            (EXT_TRACESTATE, &md.tracestate),
        ] {
            if let Some(v) = value {
                b = b.extension(name, v.clone())?;
            }
        }
        for (k, v) in &md.extensions {
            b = b.extension(k, v.clone())?;
        }
        b.build()
    }

    /// Turns a CloudEvent (e.g. received from a bus) back into the stream id and
    /// record it describes. The schema version comes from the `schemaversion`
    /// extension (default 1).
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when `subject` is missing or not a stream id, or
    /// `id` is not a UUID.
    pub fn to_record(&self) -> Result<(StreamId, EventRecord)> {
        let stream = StreamId::parse(
            self.subject
                .clone()
                .ok_or_else(|| attr_error("subject", "is required to name the stream"))?,
        )?;
        let id = uuid::Uuid::parse_str(&self.id)
            .map_err(|e| attr_error("id", format!("not a UUID: {e}")))?;
        let version = match self.extensions.get(EXT_SCHEMA_VERSION) {
            None => 1,
            Some(ExtensionValue::Integer(i)) => {
                u32::try_from(*i).map_err(|_| attr_error(EXT_SCHEMA_VERSION, "out of range"))?
            }
            Some(ExtensionValue::String(s)) => s
                .parse()
                .map_err(|_| attr_error(EXT_SCHEMA_VERSION, "not an integer"))?,
            Some(ExtensionValue::Boolean(_)) => {
                return Err(attr_error(EXT_SCHEMA_VERSION, "not an integer"));
            }
        };
        let mut metadata = Metadata::default();
        for (k, v) in &self.extensions {
            let v = v.to_header_value();
            match k.as_str() {
                EXT_CORRELATION_ID => metadata.correlation_id = Some(v),
                EXT_CAUSATION_ID => metadata.causation_id = Some(v),
                EXT_TRACEPARENT => metadata.traceparent = Some(v),
                EXT_TRACESTATE => metadata.tracestate = Some(v),
                EXT_PARTITION_KEY | EXT_STREAM_REVISION | EXT_GLOBAL_POSITION
                | EXT_SCHEMA_VERSION => {}
                _ => {
                    metadata.extensions.insert(k.clone(), v);
                }
            }
        }
        let record = EventRecord {
            id,
            event_type: self.ty.clone(),
            schema_version: version,
            source: self.source.clone(),
            time: self.time.unwrap_or_else(Utc::now),
            content_type: self
                .datacontenttype
                .clone()
                .unwrap_or_else(|| crate::codec::JSON_CONTENT_TYPE.to_owned()),
            data: self.data_bytes(),
            metadata,
        };
        Ok((stream, record))
    }
}

/// The `dataschema` URI of an event type at a version.
#[must_use]
pub fn schema_uri(event_type: &str, version: u32) -> String {
    format!("urn:orchestrix:schema:{event_type}:{version}")
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// Standard base64 with padding.
#[must_use]
pub fn base64_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard base64.
///
/// # Errors
/// A description of the bad input.
pub fn base64_decode(s: &str) -> std::result::Result<Vec<u8>, String> {
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .map_err(|e| format!("invalid base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rejects_missing_and_malformed_attributes() {
        let base = json!({"specversion": "1.0", "id": "1", "source": "/s", "type": "t"});
        assert!(CloudEvent::from_json(&base).is_ok());
        for (attr, bad) in [
            ("specversion", json!("0.3")),
            ("id", json!("")),
            ("source", json!("has space")),
            ("type", json!(7)),
            ("time", json!("yesterday")),
            ("dataschema", json!("relative/path")),
            ("datacontenttype", json!("json")),
            ("Bad_Ext", json!("x")),
            ("toolongextensionname1", json!("x")),
            ("ext", json!({"nested": true})),
            ("data_base64", json!("***")),
        ] {
            let mut v = base.clone();
            v[attr] = bad;
            let err = CloudEvent::from_json(&v).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{attr}: {err}");
        }
        for missing in ["specversion", "id", "source", "type"] {
            let mut v = base.clone();
            v.as_object_mut().unwrap().remove(missing);
            assert!(
                CloudEvent::from_json(&v)
                    .unwrap_err()
                    .to_string()
                    .contains(missing)
            );
        }
        let mut both = base.clone();
        both["data"] = json!(1);
        both["data_base64"] = json!("AA==");
        assert!(CloudEvent::from_json(&both).is_err());
        assert!(CloudEvent::from_json(&json!([1])).is_err());
    }

    #[test]
    fn round_trips_json_with_binary_data_and_typed_extensions() {
        let ce = CloudEvent::builder("id-1", "urn:x", "com.acme.T")
            .time(Utc::now())
            .data(
                "application/avro",
                Data::Binary(Bytes::from_static(&[0, 1, 2, 255])),
            )
            .extension_value("n", ExtensionValue::Integer(-3))
            .unwrap()
            .extension_value("flag", ExtensionValue::Boolean(true))
            .unwrap()
            .build()
            .unwrap();
        let text = ce.to_json().to_string();
        let back = CloudEvent::from_json(&serde_json::from_str(&text).unwrap()).unwrap();
        assert_eq!(back, ce);
    }

    #[test]
    fn recorded_event_round_trips_through_the_envelope() {
        let mut record = EventRecord::json("com.acme.Opened", 3, &json!({"a": 1}));
        record.metadata.correlation_id = Some("corr".into());
        record.metadata.causation_id = Some("cause".into());
        record.metadata.traceparent =
            Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
        record
            .metadata
            .extensions
            .insert("tenant".into(), "t1".into());
        let recorded = RecordedEvent {
            stream_id: StreamId::parse("order-9").unwrap(),
            revision: 4,
            position: 17,
            record,
        };
        let ce = CloudEvent::from_recorded(&recorded).unwrap();
        assert_eq!(ce.subject(), Some("order-9"));
        assert_eq!(ce.extension(EXT_PARTITION_KEY).as_deref(), Some("order-9"));
        assert_eq!(ce.extension(EXT_GLOBAL_POSITION).as_deref(), Some("17"));
        assert_eq!(
            ce.dataschema(),
            Some("urn:orchestrix:schema:com.acme.Opened:3")
        );
        let json = ce.to_json();
        let (stream, back) = CloudEvent::from_json(&json).unwrap().to_record().unwrap();
        assert_eq!(stream, recorded.stream_id);
        assert_eq!(back.metadata, recorded.record.metadata);
        assert_eq!(back.schema_version, 3);
        assert_eq!(back.id, recorded.record.id);
        assert_eq!(
            serde_json::from_slice::<Value>(&back.data).unwrap(),
            json!({"a": 1})
        );
    }
}

/// Binary content mode: attributes as message headers, data as the body.
///
/// The Kafka binding uses the `ce_` prefix, the NATS binding `ce-`; the
/// content type travels as the plain `content-type` header in both.
pub mod binary {
    use bytes::Bytes;

    use super::{CloudEvent, Data, ExtensionValue, attr_error};
    use crate::error::{Error, Result};
    use crate::event::RecordedEvent;

    /// Header prefix of the Kafka protocol binding.
    pub const KAFKA_PREFIX: &str = "ce_";
    /// Header prefix of the NATS protocol binding.
    pub const NATS_PREFIX: &str = "ce-";
    /// The content type header.
    pub const CONTENT_TYPE: &str = "content-type";

    /// Headers and body of a CloudEvent in binary content mode.
    ///
    /// ```
    /// use orchestrix::cloudevent::{binary, CloudEvent, Data};
    /// let ce = CloudEvent::builder("1", "/s", "com.acme.T")
    ///     .subject("order-1")
    ///     .data("application/json", Data::Json(serde_json::json!({"a": 1})))
    ///     .build()?;
    /// let (headers, body) = binary::encode(&ce, binary::KAFKA_PREFIX);
    /// assert!(headers.iter().any(|(k, v)| k == "ce_type" && v == "com.acme.T"));
    /// let back = binary::decode(headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())), &body, binary::KAFKA_PREFIX)?;
    /// assert_eq!(back.ty(), "com.acme.T");
    /// assert_eq!(back.data_bytes(), body);
    /// # Ok::<(), orchestrix::Error>(())
    /// ```
    #[must_use]
    pub fn encode(event: &CloudEvent, prefix: &str) -> (Vec<(String, String)>, Bytes) {
        let mut h = Vec::with_capacity(8 + event.extensions.len());
        h.push((
            format!("{prefix}specversion"),
            super::SPEC_VERSION.to_owned(),
        ));
        h.push((format!("{prefix}id"), event.id.clone()));
        h.push((format!("{prefix}source"), event.source.clone()));
        h.push((format!("{prefix}type"), event.ty.clone()));
        if let Some(t) = event.time {
            h.push((
                format!("{prefix}time"),
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true),
            ));
        }
        if let Some(s) = &event.subject {
            h.push((format!("{prefix}subject"), s.clone()));
        }
        if let Some(s) = &event.dataschema {
            h.push((format!("{prefix}dataschema"), s.clone()));
        }
        if let Some(ct) = &event.datacontenttype {
            h.push((CONTENT_TYPE.to_owned(), ct.clone()));
        }
        for (k, v) in &event.extensions {
            h.push((format!("{prefix}{k}"), v.to_header_value()));
        }
        (h, event.data_bytes())
    }

    /// Rebuilds a CloudEvent from binary-mode headers and body. Headers without
    /// the prefix (other than `content-type`) are ignored.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a missing required attribute, a header
    /// value that is not UTF-8, or any attribute that fails validation.
    pub fn decode<'a>(
        headers: impl IntoIterator<Item = (&'a str, &'a [u8])>,
        body: &[u8],
        prefix: &str,
    ) -> Result<CloudEvent> {
        let mut json = serde_json::Map::new();
        let mut content_type = None;
        for (name, value) in headers {
            let lower = name.to_ascii_lowercase();
            let value = std::str::from_utf8(value)
                .map_err(|_| attr_error(name, "header value is not UTF-8"))?;
            if lower == CONTENT_TYPE {
                content_type = Some(value.to_owned());
            } else if let Some(attr) = lower.strip_prefix(prefix) {
                if attr == "data" || attr == "data_base64" {
                    return Err(attr_error(name, "data travels in the body in binary mode"));
                }
                json.insert(attr.to_owned(), serde_json::Value::String(value.to_owned()));
            }
        }
        if let Some(ct) = &content_type {
            json.insert(
                "datacontenttype".into(),
                serde_json::Value::String(ct.clone()),
            );
        }
        // Binary mode keeps the body opaque; JSON parsing is left to the codec.
        let mut event = CloudEvent::from_json(&serde_json::Value::Object(json))?;
        if !body.is_empty() || content_type.is_some() {
            event.data = Some(Data::Binary(Bytes::copy_from_slice(body)));
        }
        Ok(event)
    }

    /// Turns a CloudEvent written by Orchestrix back into the stored event,
    /// using the `streamrevision` and `globalposition` extensions.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] when those extensions or the subject are missing
    /// or malformed.
    pub fn to_recorded(event: &CloudEvent) -> Result<RecordedEvent> {
        let (stream_id, record) = event.to_record()?;
        let int = |name: &str| -> Result<u64> {
            match event.extensions.get(name) {
                Some(ExtensionValue::Integer(i)) => {
                    u64::try_from(*i).map_err(|_| attr_error(name, "negative"))
                }
                Some(ExtensionValue::String(s)) => s
                    .parse()
                    .map_err(|_| attr_error(name, format!("`{s}` is not an integer"))),
                Some(ExtensionValue::Boolean(_)) => Err(attr_error(name, "not an integer")),
                None => Err(Error::invalid(
                    format!("CloudEvents extension `{name}`"),
                    "is required for an Orchestrix event",
                )),
            }
        };
        Ok(RecordedEvent {
            stream_id,
            revision: int(super::EXT_STREAM_REVISION)?,
            position: int(super::EXT_GLOBAL_POSITION)?,
            record,
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use crate::event::EventRecord;
        use crate::id::StreamId;

        #[test]
        fn recorded_events_round_trip_through_binary_mode() {
            let mut record =
                EventRecord::json("com.acme.Placed", 2, &serde_json::json!({"total": 3}));
            record.metadata.correlation_id = Some("c".into());
            let recorded = RecordedEvent {
                stream_id: StreamId::parse("order-5").unwrap(),
                revision: 3,
                position: 99,
                record,
            };
            let ce = CloudEvent::from_recorded(&recorded).unwrap();
            for prefix in [KAFKA_PREFIX, NATS_PREFIX] {
                let (headers, body) = encode(&ce, prefix);
                let back = decode(
                    headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
                    &body,
                    prefix,
                )
                .unwrap();
                let back = to_recorded(&back).unwrap();
                assert_eq!(back.stream_id, recorded.stream_id);
                assert_eq!((back.revision, back.position), (3, 99));
                assert_eq!(back.record.id, recorded.record.id);
                assert_eq!(back.record.schema_version, 2);
                assert_eq!(back.record.metadata, recorded.record.metadata);
                assert_eq!(back.record.data, recorded.record.data);
                assert_eq!(back.record.content_type, "application/json");
                assert_eq!(
                    back.record.time.timestamp_micros(),
                    recorded.record.time.timestamp_micros()
                );
            }
        }

        #[test]
        fn opaque_envelope_keeps_the_stored_bytes_and_the_same_headers() {
            let mut record =
                EventRecord::json("com.acme.Placed", 1, &serde_json::json!({"b": 1, "a": 2}));
            record.data = bytes::Bytes::from_static(br#"{ "b": 1, "a": 2 }"#);
            let recorded = RecordedEvent {
                stream_id: StreamId::parse("order-5").unwrap(),
                revision: 0,
                position: 1,
                record,
            };
            let (parsed_headers, _) =
                encode(&CloudEvent::from_recorded(&recorded).unwrap(), KAFKA_PREFIX);
            let (headers, body) = encode(
                &CloudEvent::from_recorded_opaque(&recorded).unwrap(),
                KAFKA_PREFIX,
            );
            assert_eq!(headers, parsed_headers);
            assert_eq!(body, recorded.record.data, "not re-serialized");
        }

        #[test]
        fn undecodable_headers_are_typed_errors() {
            let missing = decode(
                [("ce_id", b"1".as_slice()), ("ce_source", b"/s")],
                b"",
                KAFKA_PREFIX,
            );
            assert!(matches!(missing, Err(Error::InvalidInput { .. })));
            let not_utf8 = decode([("ce_id", [0xff_u8].as_slice())], b"", KAFKA_PREFIX);
            assert!(matches!(not_utf8, Err(Error::InvalidInput { .. })));
            let foreign = decode(
                [
                    ("ce_specversion", b"1.0".as_slice()),
                    ("ce_id", b"x"),
                    ("ce_source", b"/s"),
                    ("ce_type", b"t"),
                ],
                b"{}",
                KAFKA_PREFIX,
            )
            .unwrap();
            assert!(to_recorded(&foreign).is_err(), "no subject, no position");
        }
    }
}
