//! Backend URLs: a backend is chosen by the URL's scheme.

use std::fmt;

use crate::error::{Error, Result};

/// A backend kind, by URL scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scheme {
    /// `memory://`: in-process, nothing persists.
    Memory,
    /// `sqlite://PATH` (or `sqlite::memory:`): the embedded file store.
    Sqlite,
    /// `postgres://` or `postgresql://`.
    Postgres,
    /// `scylla://`.
    Scylla,
    /// `kafka://host:port[,host:port]`.
    Kafka,
    /// `nats://host:port`.
    Nats,
}

impl Scheme {
    /// Every known scheme with its spelling(s).
    pub const ALL: &'static [(&'static str, Scheme)] = &[
        ("memory", Self::Memory),
        ("sqlite", Self::Sqlite),
        ("postgres", Self::Postgres),
        ("postgresql", Self::Postgres),
        ("scylla", Self::Scylla),
        ("kafka", Self::Kafka),
        ("nats", Self::Nats),
    ];

    /// The canonical scheme name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
            Self::Scylla => "scylla",
            Self::Kafka => "kafka",
            Self::Nats => "nats",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed backend URL.
///
/// ```
/// use orchestrix::url::{BackendUrl, Scheme};
/// let u = BackendUrl::parse("sqlite://data/orchestrix.db")?;
/// assert_eq!(u.scheme(), Scheme::Sqlite);
/// assert_eq!(u.rest(), "data/orchestrix.db");
/// assert!(BackendUrl::parse("mysql://x").is_err());
/// assert!(BackendUrl::parse("no scheme").is_err());
/// assert!(BackendUrl::parse("postgres://[bad").is_err());
/// # Ok::<(), orchestrix::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrl {
    scheme: Scheme,
    raw: String,
    rest: String,
}

impl BackendUrl {
    /// Parses and checks a backend URL.
    ///
    /// # Errors
    /// [`Error::InvalidInput`] for a malformed URL or an unknown scheme.
    pub fn parse(raw: &str) -> Result<Self> {
        let invalid =
            |reason: String| Error::invalid(format!("backend URL `{}`", redact(raw)), reason);
        let known = Scheme::ALL
            .iter()
            .map(|(s, _)| *s)
            .collect::<Vec<_>>()
            .join(", ");
        let Some((scheme_text, rest)) = raw.split_once(':') else {
            return Err(invalid(format!(
                "expected `scheme://...` with a scheme among {known}"
            )));
        };
        let Some(&(_, scheme)) = Scheme::ALL
            .iter()
            .find(|(s, _)| s.eq_ignore_ascii_case(scheme_text))
        else {
            return Err(invalid(format!(
                "unknown scheme `{scheme_text}` (known: {known})"
            )));
        };
        if scheme == Scheme::Sqlite && rest == ":memory:" {
            return Ok(Self {
                scheme,
                raw: raw.to_owned(),
                rest: ":memory:".to_owned(),
            });
        }
        let Some(rest) = rest.strip_prefix("//") else {
            return Err(invalid(format!("expected `{scheme_text}://`")));
        };
        match scheme {
            Scheme::Memory => {}
            Scheme::Sqlite => {
                if rest.is_empty() {
                    return Err(invalid(
                        "needs a file path, e.g. sqlite://orchestrix.db".into(),
                    ));
                }
            }
            _ => {
                let parsed = url::Url::parse(raw).map_err(|e| invalid(e.to_string()))?;
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(invalid("needs a host".into()));
                }
            }
        }
        Ok(Self {
            scheme,
            raw: raw.to_owned(),
            rest: rest.to_owned(),
        })
    }

    /// The scheme.
    #[must_use]
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// The whole URL as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// What follows `scheme://`.
    #[must_use]
    pub fn rest(&self) -> &str {
        &self.rest
    }
}

impl fmt::Display for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.raw))
    }
}

/// Hides a password in a URL for logs and errors.
#[must_use]
pub fn redact(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => raw.to_owned(),
    }
}
