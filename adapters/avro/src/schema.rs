//! Parsed Avro schemas with their table of named types.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use apache_avro::Schema;
use apache_avro::schema::Name;

use crate::error::{AvroError, Result};

/// A parsed Avro schema, ready to encode, decode and resolve with.
///
/// Keeps the schema text as given (what a registry stores), the Parsing
/// Canonical Form (what fingerprints are computed over) and the table of the
/// named types it defines, so that references (`"type": "com.acme.Money"`) can
/// be followed.
///
/// ```
/// use orchestrix_avro::ParsedSchema;
/// let s = ParsedSchema::parse(r#"{"type":"record","name":"Pinged","namespace":"com.acme","fields":[{"name":"n","type":"long"}]}"#)?;
/// assert_eq!(s.fullname(), Some("com.acme.Pinged"));
/// assert!(ParsedSchema::parse(r#"{"type":"record","name":"x"}"#).is_err());
/// # Ok::<(), orchestrix_avro::AvroError>(())
/// ```
#[derive(Clone)]
pub struct ParsedSchema {
    inner: Arc<Inner>,
}

struct Inner {
    schema: Schema,
    text: String,
    /// `text` with JSON whitespace and key order normalized: the identity
    /// a registry compares (computed once, used per event by the id cache).
    normalized: String,
    canonical: String,
    fullname: Option<String>,
    names: HashMap<String, Schema>,
}

impl fmt::Debug for ParsedSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedSchema")
            .field("fullname", &self.inner.fullname)
            .field("canonical", &self.inner.canonical)
            .finish()
    }
}

impl PartialEq for ParsedSchema {
    /// Two schemas are equal when their texts are equal after normalizing JSON
    /// whitespace and key order (defaults, docs and aliases count).
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner) || self.inner.normalized == other.inner.normalized
    }
}

impl ParsedSchema {
    /// Parses schema text (`.avsc` JSON).
    ///
    /// # Errors
    /// [`AvroError::SchemaParse`] when the text is not a valid Avro schema.
    pub fn parse(text: &str) -> Result<Self> {
        Self::parse_named("", text)
    }

    /// Parses schema text, naming its origin (a file, an event type) in errors.
    ///
    /// # Errors
    /// [`AvroError::SchemaParse`] when the text is not a valid Avro schema.
    pub fn parse_named(what: &str, text: &str) -> Result<Self> {
        let schema = Schema::parse_str(text).map_err(|e| AvroError::SchemaParse {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_schema_with_text(schema, text.to_owned()))
    }

    /// Wraps an already built schema (for example one from `apache-avro`'s
    /// `AvroSchema` derive).
    #[must_use]
    pub fn from_schema(schema: Schema) -> Self {
        let text = serde_json::to_string(&schema).unwrap_or_else(|_| schema.canonical_form());
        Self::from_schema_with_text(schema, text)
    }

    fn from_schema_with_text(schema: Schema, text: String) -> Self {
        let mut names = HashMap::new();
        collect_names(&schema, None, &mut names);
        let fullname = schema.name().map(|n| n.fullname(None));
        let canonical = schema.canonical_form();
        let normalized = normalize_json(&text);
        Self {
            inner: Arc::new(Inner {
                schema,
                text,
                normalized,
                canonical,
                fullname,
                names,
            }),
        }
    }

    /// The schema.
    #[must_use]
    pub fn schema(&self) -> &Schema {
        &self.inner.schema
    }

    /// The schema text as given.
    #[must_use]
    pub fn text(&self) -> &str {
        &self.inner.text
    }

    /// The text with JSON whitespace and key order normalized (docs,
    /// defaults and aliases kept): what a registry compares schemas by.
    #[must_use]
    pub fn normalized(&self) -> &str {
        &self.inner.normalized
    }

    /// The Parsing Canonical Form (no docs, defaults or aliases).
    #[must_use]
    pub fn canonical_form(&self) -> &str {
        &self.inner.canonical
    }

    /// The full name (`namespace.name`) of a named top-level type (record, enum,
    /// fixed); `None` for primitives, arrays, maps and unions.
    #[must_use]
    pub fn fullname(&self) -> Option<&str> {
        self.inner.fullname.as_deref()
    }

    /// The named types defined in the schema, by full name.
    pub(crate) fn names(&self) -> &HashMap<String, Schema> {
        &self.inner.names
    }

    /// Whether both handles point at the same parsed schema.
    #[must_use]
    pub fn same(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }
}

/// Normalizes JSON text (key order, whitespace) for identity comparisons;
/// text that is not JSON is returned trimmed.
#[must_use]
pub fn normalize_json(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .map_or_else(|_| text.trim().to_owned(), |v| v.to_string())
}

/// The full name of `name` inside namespace `ns`.
pub(crate) fn fullname(name: &Name, ns: Option<&str>) -> String {
    if name.name.contains('.') {
        return name.name.clone();
    }
    match name.namespace.as_deref().or(ns) {
        Some(ns) if !ns.is_empty() => format!("{ns}.{}", name.name),
        _ => name.name.clone(),
    }
}

/// The namespace that a named type opens for the types inside it.
pub(crate) fn inner_namespace<'a>(name: &'a Name, ns: Option<&'a str>) -> Option<&'a str> {
    if let Some((space, _)) = name.name.rsplit_once('.') {
        return Some(space);
    }
    name.namespace.as_deref().or(ns)
}

fn collect_names(schema: &Schema, ns: Option<&str>, names: &mut HashMap<String, Schema>) {
    match schema {
        Schema::Record(r) => {
            names.insert(fullname(&r.name, ns), schema.clone());
            let inner = inner_namespace(&r.name, ns);
            for f in &r.fields {
                collect_names(&f.schema, inner, names);
            }
        }
        Schema::Enum(e) => {
            names.insert(fullname(&e.name, ns), schema.clone());
        }
        Schema::Fixed(f) => {
            names.insert(fullname(&f.name, ns), schema.clone());
        }
        Schema::Decimal(d) => collect_names(&d.inner, ns, names),
        Schema::Array(a) => collect_names(&a.items, ns, names),
        Schema::Map(m) => collect_names(&m.types, ns, names),
        Schema::Union(u) => {
            for v in u.variants() {
                collect_names(v, ns, names);
            }
        }
        _ => {}
    }
}

/// Follows a reference to the named type it names.
pub(crate) fn deref<'a>(
    schema: &'a Schema,
    ns: Option<&'a str>,
    names: &'a HashMap<String, Schema>,
) -> std::result::Result<(&'a Schema, Option<&'a str>), String> {
    match schema {
        Schema::Ref { name } => {
            let full = fullname(name, ns);
            let target = names
                .get(&full)
                .ok_or_else(|| format!("unknown named type `{full}`"))?;
            // The referenced type carries its own namespace.
            Ok((
                target,
                target.name().and_then(|n| inner_namespace(n, None)).or(ns),
            ))
        }
        other => Ok((other, ns)),
    }
}

/// The Avro type name of a schema, for messages and for tagged union values.
pub(crate) fn type_name(schema: &Schema, ns: Option<&str>) -> String {
    match schema {
        Schema::Null => "null".into(),
        Schema::Boolean => "boolean".into(),
        Schema::Int => "int".into(),
        Schema::Long => "long".into(),
        Schema::Float => "float".into(),
        Schema::Double => "double".into(),
        Schema::Bytes => "bytes".into(),
        Schema::String => "string".into(),
        Schema::Array(_) => "array".into(),
        Schema::Map(_) => "map".into(),
        Schema::Union(_) => "union".into(),
        Schema::Record(r) => fullname(&r.name, ns),
        Schema::Enum(e) => fullname(&e.name, ns),
        Schema::Fixed(f) => fullname(&f.name, ns),
        Schema::Ref { name } => fullname(name, ns),
        Schema::Decimal(_) => "decimal".into(),
        Schema::BigDecimal => "big-decimal".into(),
        Schema::Uuid => "uuid".into(),
        Schema::Date => "date".into(),
        Schema::TimeMillis => "time-millis".into(),
        Schema::TimeMicros => "time-micros".into(),
        Schema::TimestampMillis => "timestamp-millis".into(),
        Schema::TimestampMicros => "timestamp-micros".into(),
        Schema::TimestampNanos => "timestamp-nanos".into(),
        Schema::LocalTimestampMillis => "local-timestamp-millis".into(),
        Schema::LocalTimestampMicros => "local-timestamp-micros".into(),
        Schema::LocalTimestampNanos => "local-timestamp-nanos".into(),
        Schema::Duration => "duration".into(),
    }
}

/// The physical (wire) kind of a schema, logical types mapped to what they
/// annotate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phys {
    Null,
    Boolean,
    Int,
    Long,
    Float,
    Double,
    Bytes,
    String,
    Fixed(usize),
    Enum,
    Array,
    Map,
    Record,
    Union,
}

impl Phys {
    pub(crate) fn of(schema: &Schema) -> Self {
        match schema {
            Schema::Null => Self::Null,
            Schema::Boolean => Self::Boolean,
            Schema::Int | Schema::Date | Schema::TimeMillis => Self::Int,
            Schema::Long
            | Schema::TimeMicros
            | Schema::TimestampMillis
            | Schema::TimestampMicros
            | Schema::TimestampNanos
            | Schema::LocalTimestampMillis
            | Schema::LocalTimestampMicros
            | Schema::LocalTimestampNanos => Self::Long,
            Schema::Float => Self::Float,
            Schema::Double => Self::Double,
            Schema::Bytes | Schema::BigDecimal => Self::Bytes,
            Schema::String | Schema::Uuid => Self::String,
            Schema::Fixed(f) => Self::Fixed(f.size),
            Schema::Duration => Self::Fixed(12),
            Schema::Decimal(d) => Self::of(&d.inner),
            Schema::Enum(_) => Self::Enum,
            Schema::Array(_) => Self::Array,
            Schema::Map(_) => Self::Map,
            Schema::Record(_) | Schema::Ref { .. } => Self::Record,
            Schema::Union(_) => Self::Union,
        }
    }

    /// Whether a value written as `self` can be read as `reader` by the
    /// promotion rules of the Avro specification (same kind included).
    pub(crate) fn promotes_to(self, reader: Self) -> bool {
        use Phys::{Bytes, Double, Float, Int, Long, String};
        self == reader
            || matches!(
                (self, reader),
                (Int, Long | Float | Double)
                    | (Long, Float | Double)
                    | (Float, Double)
                    | (String, Bytes)
                    | (Bytes, String)
            )
    }
}

/// The name of a named type (record, enum, fixed), if it is one.
pub(crate) fn named(schema: &Schema) -> Option<(&Name, Option<&[apache_avro::schema::Alias]>)> {
    match schema {
        Schema::Record(r) => Some((&r.name, r.aliases.as_deref())),
        Schema::Enum(e) => Some((&e.name, e.aliases.as_deref())),
        Schema::Fixed(f) => Some((&f.name, f.aliases.as_deref())),
        Schema::Decimal(d) => named(&d.inner),
        _ => None,
    }
}

fn simple_name(n: &Name) -> &str {
    n.name.rsplit('.').next().unwrap_or(&n.name)
}

/// Avro's name rule for resolution, as Java's `SchemaCompatibility` applies it:
/// the unqualified names are equal, or one of the reader's aliases names the
/// writer's full name (an alias without namespace matches the unqualified name).
pub(crate) fn names_match(
    writer: &Schema,
    wns: Option<&str>,
    reader: &Schema,
    _rns: Option<&str>,
) -> bool {
    let (Some((w, _)), Some((r, aliases))) = (named(writer), named(reader)) else {
        return true;
    };
    let w_simple = simple_name(w);
    if w_simple == simple_name(r) {
        return true;
    }
    let Some(aliases) = aliases.filter(|a| !a.is_empty()) else {
        return false;
    };
    let w_full = fullname(w, wns);
    aliases.iter().any(|a| {
        if a.namespace().is_some() || a.name().contains('.') {
            a.fullname(None) == w_full
        } else {
            a.name() == w_simple
        }
    })
}
