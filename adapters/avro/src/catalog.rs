//! [`AvroSchemas`]: the catalog of Avro schemas per event type and version.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use orchestrix::Event;

use crate::error::{AvroError, Result};
use crate::schema::ParsedSchema;

/// Avro schemas keyed by `(event type, schema version)`.
///
/// Declared as `.avsc` text (inline, or files named
/// `{event type}.v{version}.avsc` loaded with [`load_dir`](Self::load_dir)), or
/// built from an `apache_avro::Schema` (for example one derived with
/// `apache-avro`'s `AvroSchema` derive on a payload struct) with
/// [`insert`](Self::insert). The latest registered version of a type is the
/// reader schema that older data resolves to.
///
/// ```
/// use orchestrix_avro::AvroSchemas;
/// let schemas = AvroSchemas::new()
///     .with("com.acme.Pinged", 1, r#"{"type":"record","name":"Pinged","namespace":"com.acme","fields":[]}"#)?
///     .with("com.acme.Pinged", 2, r#"{"type":"record","name":"Pinged","namespace":"com.acme",
///         "fields":[{"name":"loud","type":"boolean","default":false}]}"#)?;
/// assert_eq!(schemas.latest_version("com.acme.Pinged"), Some(2));
/// assert_eq!(schemas.event_type_of("com.acme.Pinged"), Some("com.acme.Pinged"));
/// assert!(schemas.get("com.acme.Pinged", 3).is_none());
/// # Ok::<(), orchestrix_avro::AvroError>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct AvroSchemas {
    types: HashMap<String, BTreeMap<u32, ParsedSchema>>,
    by_fullname: HashMap<String, String>,
}

impl AvroSchemas {
    /// An empty catalog.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses and registers the schema of `event_type` at `version` (builder form).
    ///
    /// # Errors
    /// [`AvroError::SchemaParse`] when the text is not a valid Avro schema.
    pub fn with(mut self, event_type: &str, version: u32, avsc: &str) -> Result<Self> {
        self.register(event_type, version, avsc)?;
        Ok(self)
    }

    /// Parses and registers the schema of `event_type` at `version`, replacing
    /// any schema registered for that key.
    ///
    /// # Errors
    /// [`AvroError::SchemaParse`] when the text is not a valid Avro schema.
    pub fn register(
        &mut self,
        event_type: &str,
        version: u32,
        avsc: &str,
    ) -> Result<&ParsedSchema> {
        let parsed = ParsedSchema::parse_named(&format!("of `{event_type}` v{version}"), avsc)?;
        Ok(self.insert(event_type, version, parsed))
    }

    /// Registers an already parsed schema.
    pub fn insert(
        &mut self,
        event_type: &str,
        version: u32,
        schema: ParsedSchema,
    ) -> &ParsedSchema {
        if let Some(name) = schema.fullname() {
            self.by_fullname
                .insert(name.to_owned(), event_type.to_owned());
        }
        let versions = self.types.entry(event_type.to_owned()).or_default();
        versions.insert(version, schema);
        &versions[&version]
    }

    /// Loads every `{event type}.v{version}.avsc` file of a directory.
    ///
    /// # Errors
    /// [`AvroError::SchemaParse`] for a file that cannot be read, is misnamed or
    /// does not parse.
    pub fn load_dir(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        let io = |e: std::io::Error| AvroError::SchemaParse {
            what: dir.display().to_string(),
            reason: e.to_string(),
        };
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<std::io::Result<_>>()
            .map_err(io)?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        let mut schemas = Self::new();
        for entry in entries {
            let path = entry.path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            let Some(stem) = file.strip_suffix(".avsc") else {
                continue;
            };
            let (event_type, version) = stem
                .rsplit_once(".v")
                .and_then(|(t, v)| Some((t, v.parse::<u32>().ok()?)))
                .ok_or_else(|| AvroError::SchemaParse {
                    what: path.display().to_string(),
                    reason: "schema files are named `{event type}.v{version}.avsc`".into(),
                })?;
            let text = std::fs::read_to_string(&path).map_err(|e| AvroError::SchemaParse {
                what: path.display().to_string(),
                reason: e.to_string(),
            })?;
            let parsed = ParsedSchema::parse_named(&path.display().to_string(), &text)?;
            schemas.insert(event_type, version, parsed);
        }
        Ok(schemas)
    }

    /// The schema of `event_type` at `version`.
    #[must_use]
    pub fn get(&self, event_type: &str, version: u32) -> Option<&ParsedSchema> {
        self.types.get(event_type)?.get(&version)
    }

    /// The schema of `event_type` at `version`, or [`AvroError::UnknownSchema`].
    ///
    /// # Errors
    /// [`AvroError::UnknownSchema`] when none is registered.
    pub fn require(&self, event_type: &str, version: u32) -> Result<&ParsedSchema> {
        self.get(event_type, version)
            .ok_or_else(|| AvroError::UnknownSchema {
                event_type: event_type.to_owned(),
                version,
            })
    }

    /// The latest registered version of `event_type`.
    #[must_use]
    pub fn latest_version(&self, event_type: &str) -> Option<u32> {
        self.types.get(event_type)?.keys().next_back().copied()
    }

    /// The latest registered schema of `event_type` and its version: the reader
    /// schema of that type.
    #[must_use]
    pub fn latest(&self, event_type: &str) -> Option<(u32, &ParsedSchema)> {
        self.types
            .get(event_type)?
            .iter()
            .next_back()
            .map(|(v, s)| (*v, s))
    }

    /// The registered versions of `event_type`, ascending.
    #[must_use]
    pub fn versions(&self, event_type: &str) -> Vec<u32> {
        self.types
            .get(event_type)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// The event types with at least one schema, sorted.
    #[must_use]
    pub fn event_types(&self) -> Vec<&str> {
        let mut types: Vec<&str> = self.types.keys().map(String::as_str).collect();
        types.sort_unstable();
        types
    }

    /// The event type whose schemas define the named type `fullname`
    /// (`namespace.name` of the top-level record), as used by the record-name
    /// subject strategy.
    #[must_use]
    pub fn event_type_of(&self, fullname: &str) -> Option<&str> {
        self.by_fullname.get(fullname).map(String::as_str)
    }

    /// Checks that every event type of `E` has a schema at its current version.
    ///
    /// # Errors
    /// [`AvroError::UnknownSchema`] for the first one missing.
    pub fn verify<E: Event>(&self) -> Result<()> {
        for info in E::event_types() {
            self.require(info.event_type, info.version)?;
        }
        Ok(())
    }
}
