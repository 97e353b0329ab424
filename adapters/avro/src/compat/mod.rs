//! Schema compatibility with Confluent Schema Registry's modes and semantics.
//!
//! The rules are Avro's schema-resolution rules (as Apache Avro's Java
//! `SchemaCompatibility` applies them, which is what Confluent runs), checked
//! on [`apache_avro::Schema`] and reported in words with the location in the
//! reader's schema.

mod rules;

use std::fmt;
use std::str::FromStr;

pub use rules::can_read;

use crate::schema::ParsedSchema;

/// A compatibility mode, as Confluent Schema Registry names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum CompatibilityLevel {
    /// The new schema can read data written with the latest registered one (the default).
    #[default]
    Backward,
    /// The new schema can read data written with every registered one.
    BackwardTransitive,
    /// The latest registered schema can read data written with the new one.
    Forward,
    /// Every registered schema can read data written with the new one.
    ForwardTransitive,
    /// Backward and forward with the latest registered schema.
    Full,
    /// Backward and forward with every registered schema.
    FullTransitive,
    /// No check.
    None,
}

impl CompatibilityLevel {
    /// Every level.
    pub const ALL: [Self; 7] = [
        Self::Backward,
        Self::BackwardTransitive,
        Self::Forward,
        Self::ForwardTransitive,
        Self::Full,
        Self::FullTransitive,
        Self::None,
    ];

    /// The name Confluent uses, e.g. `BACKWARD_TRANSITIVE`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backward => "BACKWARD",
            Self::BackwardTransitive => "BACKWARD_TRANSITIVE",
            Self::Forward => "FORWARD",
            Self::ForwardTransitive => "FORWARD_TRANSITIVE",
            Self::Full => "FULL",
            Self::FullTransitive => "FULL_TRANSITIVE",
            Self::None => "NONE",
        }
    }

    /// Whether every registered version is checked, not only the latest.
    #[must_use]
    pub fn is_transitive(self) -> bool {
        matches!(
            self,
            Self::BackwardTransitive | Self::ForwardTransitive | Self::FullTransitive
        )
    }

    fn backward(self) -> bool {
        matches!(
            self,
            Self::Backward | Self::BackwardTransitive | Self::Full | Self::FullTransitive
        )
    }

    fn forward(self) -> bool {
        matches!(
            self,
            Self::Forward | Self::ForwardTransitive | Self::Full | Self::FullTransitive
        )
    }
}

impl fmt::Display for CompatibilityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compatibility level name that is not one of Confluent's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid compatibility level `{0}`; valid values are none, backward, forward, full, backward_transitive, forward_transitive and full_transitive"
)]
pub struct InvalidLevel(pub String);

impl FromStr for CompatibilityLevel {
    type Err = InvalidLevel;

    /// Parses a level name, case-insensitively.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|l| l.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| InvalidLevel(s.to_owned()))
    }
}

/// The kind of an incompatibility, named as Avro's Java `SchemaCompatibility`
/// (and so Confluent's error messages) name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IncompatibilityKind {
    /// Named types (record, enum, fixed) whose names differ and no reader alias bridges.
    NameMismatch,
    /// `fixed` types of different sizes.
    FixedSizeMismatch,
    /// Writer enum symbols the reader lacks, and the reader enum has no default.
    MissingEnumSymbols,
    /// A reader field the writer lacks, with no default in the reader.
    ReaderFieldMissingDefaultValue,
    /// Types that do not resolve (and no promotion applies).
    TypeMismatch,
    /// A writer type that no branch of the reader's union can read.
    MissingUnionBranch,
}

impl IncompatibilityKind {
    /// The Java constant name, e.g. `READER_FIELD_MISSING_DEFAULT_VALUE`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NameMismatch => "NAME_MISMATCH",
            Self::FixedSizeMismatch => "FIXED_SIZE_MISMATCH",
            Self::MissingEnumSymbols => "MISSING_ENUM_SYMBOLS",
            Self::ReaderFieldMissingDefaultValue => "READER_FIELD_MISSING_DEFAULT_VALUE",
            Self::TypeMismatch => "TYPE_MISMATCH",
            Self::MissingUnionBranch => "MISSING_UNION_BRANCH",
        }
    }
}

impl fmt::Display for IncompatibilityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which way a check went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// The new schema reads data written with an existing one.
    Backward,
    /// An existing schema reads data written with the new one.
    Forward,
}

/// One reason why a reader schema cannot read a writer schema's data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Incompatibility {
    /// What kind of rule failed.
    pub kind: IncompatibilityKind,
    /// Where, as a path in the reader's schema: `/fields/2/type/items`.
    pub path: String,
    /// What failed, for a person.
    pub message: String,
    /// Set by [`check_compatibility`]: the direction of the failed check.
    pub direction: Option<Direction>,
    /// Set by [`check_compatibility`]: the registered version checked against.
    pub version: Option<u32>,
}

impl fmt::Display for Incompatibility {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.direction, self.version) {
            (Some(Direction::Backward), Some(v)) => write!(
                f,
                "the new schema cannot read data written with version {v}: "
            )?,
            (Some(Direction::Forward), Some(v)) => write!(
                f,
                "version {v} cannot read data written with the new schema: "
            )?,
            _ => {}
        }
        write!(f, "{} at {} ({})", self.message, self.path, self.kind)
    }
}

/// Checks a new schema against the registered ones (oldest first, with their
/// versions) under `level`, as a registry does before registering it.
/// Returns every incompatibility found; empty means compatible.
///
/// ```
/// use orchestrix_avro::ParsedSchema;
/// use orchestrix_avro::compat::{CompatibilityLevel, check_compatibility};
/// let v1 = ParsedSchema::parse(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"}]}"#)?;
/// let v2 = ParsedSchema::parse(r#"{"type":"record","name":"R","fields":[{"name":"a","type":"int"},{"name":"b","type":"string"}]}"#)?;
/// let problems = check_compatibility(CompatibilityLevel::Backward, &v2, &[(1, v1.clone())]);
/// assert_eq!(problems.len(), 1);
/// assert!(problems[0].to_string().contains("field `b` added without a default"), "{}", problems[0]);
/// assert!(check_compatibility(CompatibilityLevel::Forward, &v2, &[(1, v1)]).is_empty());
/// # Ok::<(), orchestrix_avro::AvroError>(())
/// ```
#[must_use]
pub fn check_compatibility(
    level: CompatibilityLevel,
    new: &ParsedSchema,
    previous: &[(u32, ParsedSchema)],
) -> Vec<Incompatibility> {
    if level == CompatibilityLevel::None || previous.is_empty() {
        return Vec::new();
    }
    let against: &[(u32, ParsedSchema)] = if level.is_transitive() {
        previous
    } else {
        &previous[previous.len() - 1..]
    };
    let mut out = Vec::new();
    for (version, old) in against.iter().rev() {
        if level.backward() {
            for mut i in rules::check(old, new, Some(true)) {
                i.direction = Some(Direction::Backward);
                i.version = Some(*version);
                out.push(i);
            }
        }
        if level.forward() {
            for mut i in rules::check(new, old, Some(false)) {
                i.direction = Some(Direction::Forward);
                i.version = Some(*version);
                out.push(i);
            }
        }
    }
    out
}
