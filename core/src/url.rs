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
            _ => check_hosts(rest).map_err(invalid)?,
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

/// Checks the authority of `rest` (what follows `scheme://`): one or more
/// comma-separated `host[:port]` (brokers, cluster nodes), after optional
/// user info. `url::Url` cannot parse several hosts, so this is done here.
fn check_hosts(rest: &str) -> std::result::Result<(), String> {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if hosts.is_empty() {
        return Err("needs a host".into());
    }
    for host in hosts.split(',') {
        let (name, port) = if let Some(v6) = host.strip_prefix('[') {
            let (addr, after) = v6
                .split_once(']')
                .ok_or_else(|| format!("`{host}`: unclosed `[`"))?;
            (addr, after.strip_prefix(':'))
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) => (name, Some(port)),
                None => (host, None),
            }
        };
        if name.is_empty() {
            return Err(format!("`{host}` has no host name"));
        }
        if name.contains([' ', '\t', '<', '>', '"', '{', '}', '|', '^', '`']) {
            return Err(format!("`{name}` is not a host name"));
        }
        if let Some(port) = port
            && port.parse::<u16>().is_err()
        {
            return Err(format!("`{host}` has a bad port `{port}`"));
        }
    }
    Ok(())
}

/// Hides a password in a URL for logs and errors: the one in the user info
/// and a `password=` query parameter. Works on URLs with several hosts
/// (`scylla://u:pw@n1,n2/ks`), which `url::Url` cannot parse; the rest of
/// the text is kept as given.
///
/// ```
/// use orchestrix::url::redact;
/// assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
/// assert_eq!(redact("scylla://u:pw@n1:9042,n2/ks"), "scylla://u:***@n1:9042,n2/ks");
/// assert_eq!(redact("scylla://n1/ks?user=u&password=pw&tls=on"), "scylla://n1/ks?user=u&password=***&tls=on");
/// assert_eq!(redact("nats://h:4222"), "nats://h:4222");
/// ```
#[must_use]
pub fn redact(raw: &str) -> String {
    let Some((scheme, rest)) = raw.split_once("://") else {
        return raw.to_owned();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((user_info, hosts)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{user}:***@{hosts}"),
            None => authority.to_owned(),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_hosts_parse_as_brokers_or_nodes() {
        for ok in [
            "kafka://a:9092,b:9092,c:9092?prefix=bank",
            "scylla://user:pw@n1:9042,n2:9042/ks?consistency=quorum",
            "nats://127.0.0.1:4222",
            "postgres://postgres@db/test",
            "kafka://[::1]:9092,[fe80::1]:9093",
        ] {
            let url = BackendUrl::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
            assert_eq!(url.as_str(), ok);
        }
    }

    #[test]
    fn bad_hosts_are_typed_errors_that_say_why() {
        for (bad, why) in [
            ("kafka://", "needs a host"),
            ("kafka://a:9092,:9093", "no host name"),
            ("scylla://n1:90x2/ks", "bad port"),
            ("nats://u@/x", "needs a host"),
            ("kafka://[::1:9092", "unclosed"),
        ] {
            let err = BackendUrl::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidInput { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(why), "{bad}: {err}");
        }
    }
}
