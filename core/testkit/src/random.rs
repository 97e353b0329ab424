//! Random names, so that tests sharing one database never see each other's data.
//!
//! ```
//! let category = orchestrix_testkit::random::category();
//! let stream = orchestrix_testkit::random::stream(&category);
//! assert_eq!(stream.category(), category);
//! assert_ne!(orchestrix_testkit::random::category(), category);
//! ```

use orchestrix::StreamId;
use uuid::Uuid;

/// 32 random lowercase hex digits.
#[must_use]
pub fn suffix() -> String {
    Uuid::new_v4().simple().to_string()
}

/// A fresh stream category: `t` and 32 random hex digits.
#[must_use]
pub fn category() -> String {
    format!("t{}", suffix())
}

/// A fresh stream of `category`.
///
/// # Panics
/// When `category` is not a valid category.
#[must_use]
pub fn stream(category: &str) -> StreamId {
    StreamId::new(category, &suffix())
        .unwrap_or_else(|e| panic!("cannot build a stream id in `{category}`: {e}"))
}

/// A fresh name such as `{prefix}-3f2a…`, for consumers, checkpoints, timer
/// owners and ids.
#[must_use]
pub fn name(prefix: &str) -> String {
    format!("{prefix}-{}", suffix())
}

/// A fresh CloudEvents type, `com.testkit.t{random}.{name}`.
#[must_use]
pub fn event_type(name: &str) -> String {
    format!("com.testkit.t{}.{name}", suffix())
}
