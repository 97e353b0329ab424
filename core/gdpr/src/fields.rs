//! Which fields of which event types are personal, and whose they are.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde_json::Value;

use crate::error::{Error, Result};

/// A JSON pointer (RFC 6901) into a payload, where a `*` segment stands for
/// every element of an array (or every value of an object).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath {
    text: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Key(String),
    Any,
}

impl FieldPath {
    /// Parses `/a/b`, `/items/*/email`, with `~0` for `~` and `~1` for `/`.
    ///
    /// # Errors
    /// [`Error::Config`] for a path that does not start with `/`.
    pub fn parse(text: &str) -> Result<Self> {
        let Some(rest) = text.strip_prefix('/') else {
            return Err(Error::config(
                format!("field path `{text}`"),
                "a JSON pointer starts with `/`, e.g. `/email`",
            ));
        };
        let segments = rest
            .split('/')
            .map(|s| match s {
                "*" => Segment::Any,
                s => Segment::Key(s.replace("~1", "/").replace("~0", "~")),
            })
            .collect();
        Ok(Self {
            text: text.to_owned(),
            segments,
        })
    }

    /// The path as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.text
    }

    fn has_wildcard(&self) -> bool {
        self.segments.contains(&Segment::Any)
    }

    /// Calls `f` on every value the path reaches in `value`.
    pub(crate) fn visit_mut(
        &self,
        value: &mut Value,
        f: &mut dyn FnMut(&mut Value) -> Result<()>,
    ) -> Result<()> {
        visit(value, &self.segments, f)
    }

    /// The single value the path reaches, for subject ids.
    fn get<'v>(&self, value: &'v Value) -> Option<&'v Value> {
        self.segments.iter().try_fold(value, |v, s| match s {
            Segment::Key(k) => match v {
                Value::Object(map) => map.get(k),
                Value::Array(items) => k.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            },
            Segment::Any => None,
        })
    }
}

fn visit(
    value: &mut Value,
    segments: &[Segment],
    f: &mut dyn FnMut(&mut Value) -> Result<()>,
) -> Result<()> {
    let Some((first, rest)) = segments.split_first() else {
        return f(value);
    };
    match (first, value) {
        (Segment::Key(k), Value::Object(map)) => match map.get_mut(k) {
            Some(v) => visit(v, rest, f),
            None => Ok(()),
        },
        (Segment::Key(k), Value::Array(items)) => {
            match k.parse::<usize>().ok().and_then(|i| items.get_mut(i)) {
                Some(v) => visit(v, rest, f),
                None => Ok(()),
            }
        }
        (Segment::Any, Value::Array(items)) => items.iter_mut().try_for_each(|v| visit(v, rest, f)),
        (Segment::Any, Value::Object(map)) => map.values_mut().try_for_each(|v| visit(v, rest, f)),
        _ => Ok(()),
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The personal fields of one event type (and version).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFields {
    subject: FieldPath,
    personal: Vec<FieldPath>,
}

impl EventFields {
    /// The path of the data subject's id.
    #[must_use]
    pub fn subject(&self) -> &FieldPath {
        &self.subject
    }

    /// The paths of the personal fields.
    #[must_use]
    pub fn personal(&self) -> &[FieldPath] {
        &self.personal
    }

    /// The subject id in a payload: a string, or a number written as text.
    pub(crate) fn subject_of(&self, event_type: &str, payload: &Value) -> Result<String> {
        match self.subject.get(payload) {
            Some(Value::String(s)) if !s.is_empty() => Ok(s.clone()),
            Some(Value::Number(n)) => Ok(n.to_string()),
            _ => Err(Error::MissingSubject {
                event_type: event_type.to_owned(),
                path: self.subject.to_string(),
            }),
        }
    }
}

/// Which fields of which event types hold personal data, and where each
/// event names its data subject.
///
/// Register field paths per event type (every version) or per event type and
/// version; a version-specific entry wins. With the `avro` feature, read them
/// from an Avro schema's field properties instead (`PersonalFields::avro`).
///
/// ```
/// use orchestrix_gdpr::PersonalFields;
/// let fields = PersonalFields::new()
///     .event("com.acme.CustomerRegistered", "/customer_id", ["/email", "/name"])?
///     .event("com.acme.OrderPlaced", "/customer_id", ["/shipping/address", "/items/*/gift_note"])?;
/// assert!(fields.get("com.acme.CustomerRegistered", 3).is_some());
/// assert!(fields.get("com.acme.Other", 1).is_none());
/// # Ok::<(), orchestrix_gdpr::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct PersonalFields {
    by_type: HashMap<String, Arc<EventFields>>,
    by_version: HashMap<(String, u32), Arc<EventFields>>,
}

impl PersonalFields {
    /// No personal fields.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks `personal` fields of every version of `event_type`, whose data
    /// subject id is at `subject`.
    ///
    /// # Errors
    /// [`Error::Config`] for a path that is not a JSON pointer, a subject path
    /// with `*`, or no personal field.
    pub fn event<I, S>(mut self, event_type: &str, subject: &str, personal: I) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let fields = Self::fields(event_type, subject, personal)?;
        self.by_type.insert(event_type.to_owned(), Arc::new(fields));
        Ok(self)
    }

    /// As [`event`](Self::event), for one schema version only.
    ///
    /// # Errors
    /// As [`event`](Self::event).
    pub fn event_version<I, S>(
        mut self,
        event_type: &str,
        version: u32,
        subject: &str,
        personal: I,
    ) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let fields = Self::fields(event_type, subject, personal)?;
        self.by_version
            .insert((event_type.to_owned(), version), Arc::new(fields));
        Ok(self)
    }

    fn fields<I, S>(event_type: &str, subject: &str, personal: I) -> Result<EventFields>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let subject = FieldPath::parse(subject)?;
        if subject.has_wildcard() {
            return Err(Error::config(
                format!("subject path `{subject}` of `{event_type}`"),
                "one event has one data subject: no `*`",
            ));
        }
        let personal = personal
            .into_iter()
            .map(|p| FieldPath::parse(p.as_ref()))
            .collect::<Result<Vec<_>>>()?;
        if personal.is_empty() {
            return Err(Error::config(
                format!("personal fields of `{event_type}`"),
                "none given",
            ));
        }
        if personal.contains(&subject) {
            return Err(Error::config(
                format!("personal fields of `{event_type}`"),
                format!("the subject id `{subject}` cannot be encrypted with its own key"),
            ));
        }
        Ok(EventFields { subject, personal })
    }

    /// The personal fields of `event_type` at `version`, if it has any.
    #[must_use]
    pub fn get(&self, event_type: &str, version: u32) -> Option<&EventFields> {
        self.by_version
            .get(&(event_type.to_owned(), version))
            .or_else(|| self.by_type.get(event_type))
            .map(AsRef::as_ref)
    }

    /// Whether nothing is marked.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.by_type.is_empty() && self.by_version.is_empty()
    }
}

#[cfg(feature = "avro")]
mod avro {
    use std::collections::HashMap;

    use apache_avro::Schema;
    use apache_avro::schema::Name;

    use super::PersonalFields;
    use crate::error::{Error, Result};

    /// Nesting deeper than this is refused (recursive named types).
    const MAX_DEPTH: usize = 32;

    #[derive(Default)]
    struct Found {
        subject: Vec<String>,
        personal: Vec<String>,
    }

    fn escape(name: &str) -> String {
        name.replace('~', "~0").replace('/', "~1")
    }

    fn is_true(attrs: &std::collections::BTreeMap<String, serde_json::Value>, key: &str) -> bool {
        attrs.get(key) == Some(&serde_json::Value::Bool(true))
    }

    /// A string, or a union of `null` and a string.
    fn holds_a_string(schema: &Schema) -> bool {
        match schema {
            Schema::String => true,
            Schema::Union(u) => {
                u.variants().iter().any(|v| matches!(v, Schema::String))
                    && u.variants()
                        .iter()
                        .all(|v| matches!(v, Schema::String | Schema::Null))
            }
            _ => false,
        }
    }

    fn walk<'s>(
        schema: &'s Schema,
        path: &str,
        names: &mut HashMap<Name, &'s Schema>,
        found: &mut Found,
        depth: usize,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::config(
                format!("Avro schema at `{path}`"),
                "nested too deep (a recursive type?)",
            ));
        }
        match schema {
            Schema::Record(record) => {
                names.insert(record.name.clone(), schema);
                for field in &record.fields {
                    let at = format!("{path}/{}", escape(&field.name));
                    if is_true(&field.custom_attributes, "subject") {
                        found.subject.push(at.clone());
                    }
                    if is_true(&field.custom_attributes, "personal") {
                        if !holds_a_string(&field.schema) {
                            return Err(Error::config(
                                format!("personal Avro field `{at}`"),
                                "must be a string or a nullable string (it is stored as a ciphertext token)",
                            ));
                        }
                        found.personal.push(at);
                        continue;
                    }
                    walk(&field.schema, &at, names, found, depth + 1)?;
                }
                Ok(())
            }
            Schema::Array(array) => {
                walk(&array.items, &format!("{path}/*"), names, found, depth + 1)
            }
            Schema::Map(map) => walk(&map.types, &format!("{path}/*"), names, found, depth + 1),
            Schema::Union(union) => union
                .variants()
                .iter()
                .try_for_each(|v| walk(v, path, names, found, depth + 1)),
            Schema::Ref { name } => match names.get(name).copied() {
                Some(named) => walk(named, path, names, found, depth + 1),
                None => Ok(()),
            },
            _ => Ok(()),
        }
    }

    impl PersonalFields {
        /// Marks the fields of `event_type` v`version` that its Avro record
        /// schema marks: `"personal": true` on each personal field (a string
        /// or nullable string, anywhere in nested records, arrays and maps)
        /// and `"subject": true` on the one field holding the data subject id.
        /// A schema with no personal field adds nothing.
        ///
        /// ```
        /// use orchestrix_gdpr::PersonalFields;
        /// let schema = apache_avro::Schema::parse_str(r#"{"type": "record", "name": "CustomerRegistered",
        ///   "fields": [{"name": "customer_id", "type": "string", "subject": true},
        ///              {"name": "email", "type": "string", "personal": true},
        ///              {"name": "plan", "type": "string"}]}"#).unwrap();
        /// let fields = PersonalFields::new().avro("com.acme.CustomerRegistered", 1, &schema)?;
        /// let marked = fields.get("com.acme.CustomerRegistered", 1).unwrap();
        /// assert_eq!(marked.subject().as_str(), "/customer_id");
        /// assert_eq!(marked.personal()[0].as_str(), "/email");
        /// # Ok::<(), orchestrix_gdpr::Error>(())
        /// ```
        ///
        /// # Errors
        /// [`Error::Config`] for personal fields without exactly one subject
        /// field (outside arrays and maps), or a personal field that is not a
        /// string.
        pub fn avro(self, event_type: &str, version: u32, schema: &Schema) -> Result<Self> {
            let mut found = Found::default();
            walk(schema, "", &mut HashMap::new(), &mut found, 0)?;
            if found.personal.is_empty() {
                return Ok(self);
            }
            let [subject] = found.subject.as_slice() else {
                return Err(Error::config(
                    format!("Avro schema of `{event_type}` v{version}"),
                    format!(
                        "it has personal fields, so exactly one field needs `\"subject\": true` (found {})",
                        found.subject.len()
                    ),
                ));
            };
            let subject = subject.clone();
            self.event_version(event_type, version, &subject, &found.personal)
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn paths_reach_nested_fields_and_every_array_element() {
        let path = FieldPath::parse("/items/*/note").unwrap();
        let mut v = json!({"items": [{"note": "a"}, {"note": "b"}, {"x": 1}], "note": "c"});
        let mut seen = vec![];
        path.visit_mut(&mut v, &mut |v| {
            seen.push(v.clone());
            *v = json!("X");
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, [json!("a"), json!("b")]);
        assert_eq!(v["items"][0]["note"], "X");
        assert_eq!(v["note"], "c");
        let escaped = FieldPath::parse("/a~1b/c~0d").unwrap();
        let mut v = json!({"a/b": {"c~d": 1}});
        let mut hit = false;
        escaped
            .visit_mut(&mut v, &mut |_| {
                hit = true;
                Ok(())
            })
            .unwrap();
        assert!(hit);
    }

    #[test]
    fn bad_registrations_are_refused() {
        assert!(PersonalFields::new().event("t", "id", ["/a"]).is_err());
        assert!(PersonalFields::new().event("t", "/ids/*", ["/a"]).is_err());
        assert!(PersonalFields::new().event("t", "/id", ["/id"]).is_err());
        assert!(
            PersonalFields::new()
                .event("t", "/id", Vec::<String>::new())
                .is_err()
        );
    }

    #[test]
    fn a_version_entry_wins_over_the_type_entry() {
        let f = PersonalFields::new()
            .event("t", "/id", ["/a"])
            .unwrap()
            .event_version("t", 2, "/id", ["/b"])
            .unwrap();
        assert_eq!(f.get("t", 1).unwrap().personal()[0].as_str(), "/a");
        assert_eq!(f.get("t", 2).unwrap().personal()[0].as_str(), "/b");
    }

    #[test]
    fn subject_ids_are_strings_or_numbers() {
        let f = PersonalFields::new().event("t", "/id", ["/a"]).unwrap();
        let fields = f.get("t", 1).unwrap();
        assert_eq!(
            fields.subject_of("t", &json!({"id": "c-1"})).unwrap(),
            "c-1"
        );
        assert_eq!(fields.subject_of("t", &json!({"id": 7})).unwrap(), "7");
        assert!(matches!(
            fields.subject_of("t", &json!({"id": null})),
            Err(Error::MissingSubject { .. })
        ));
    }
}
