//! The one rule for tests that need a service: where it is, and what happens
//! when it is not there.
//!
//! - The address comes from the service's env var
//!   ([`Service::env_var`]), with a loopback default ([`Service::default_url`])
//!   that matches `tests/scripts/services.sh`.
//! - [`require`] checks that the service answers on its port. When it does
//!   not, the test is skipped with a printed reason, **unless `CI=true`**, where
//!   it panics: CI never passes quietly without the service, and never falls
//!   back to an in-memory stand-in.
//! - With the `containers` feature and `ORCHESTRIX_TEST_CONTAINERS=1`, the
//!   service is started in a Docker container instead (once per test
//!   process) and its mapped address is returned; see the `containers` module.
//!
//! ```
//! use orchestrix_testkit::services::{Service, url_from_env};
//! assert_eq!(Service::Kafka.env_var(), "ORCHESTRIX_KAFKA_BROKERS");
//! assert_eq!(url_from_env(Service::Nats, None), "nats://127.0.0.1:4222");
//! assert_eq!(
//!     url_from_env(Service::Postgres, Some("postgres://u@db:5433/x".into())),
//!     "postgres://u@db:5433/x"
//! );
//! ```

use std::fmt;
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A service some tests need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Service {
    /// PostgreSQL (event store, read models, registry storage).
    Postgres,
    /// NATS with JetStream (bus).
    Nats,
    /// Apache Kafka (bus); the value is a broker list, not a URL.
    Kafka,
    /// A CQL database: ScyllaDB, or Apache Cassandra standing in for it.
    Cql,
}

impl Service {
    /// Every service.
    pub const ALL: [Service; 4] = [
        Service::Postgres,
        Service::Nats,
        Service::Kafka,
        Service::Cql,
    ];

    /// A short name for messages.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Service::Postgres => "PostgreSQL",
            Service::Nats => "NATS JetStream",
            Service::Kafka => "Apache Kafka",
            Service::Cql => "CQL (ScyllaDB/Cassandra)",
        }
    }

    /// The env var that points tests at the service.
    #[must_use]
    pub fn env_var(self) -> &'static str {
        match self {
            Service::Postgres => "ORCHESTRIX_POSTGRES_URL",
            Service::Nats => "ORCHESTRIX_NATS_URL",
            Service::Kafka => "ORCHESTRIX_KAFKA_BROKERS",
            Service::Cql => "ORCHESTRIX_SCYLLA_URL",
        }
    }

    /// Where `tests/scripts/services.sh` starts it.
    #[must_use]
    pub fn default_url(self) -> &'static str {
        match self {
            Service::Postgres => "postgres://postgres@127.0.0.1:5432/test",
            Service::Nats => "nats://127.0.0.1:4222",
            Service::Kafka => "127.0.0.1:9092",
            Service::Cql => "scylla://127.0.0.1:9042",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether this run is CI (`CI=true` or `CI=1`), where a missing service fails
/// the test.
#[must_use]
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Whether the testcontainers path is asked for (`ORCHESTRIX_TEST_CONTAINERS=1`).
#[must_use]
pub fn containers_requested() -> bool {
    std::env::var("ORCHESTRIX_TEST_CONTAINERS").is_ok_and(|v| v == "1" || v == "true")
}

/// The address of `service` given the value of its env var (`None` when
/// unset): the value, or the default.
#[must_use]
pub fn url_from_env(service: Service, value: Option<String>) -> String {
    value
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| service.default_url().to_owned())
}

/// The address tests use for `service`: a container's when the testcontainers
/// path is on, else the env var or the default. Does not check that it answers.
///
/// # Panics
/// When `ORCHESTRIX_TEST_CONTAINERS=1` and the container cannot be started, or
/// the `containers` feature is not compiled in.
#[must_use]
pub fn url(service: Service) -> String {
    if containers_requested() {
        return container_url(service);
    }
    url_from_env(service, std::env::var(service.env_var()).ok())
}

#[cfg(feature = "containers")]
fn container_url(service: Service) -> String {
    crate::containers::url(service)
}

#[cfg(not(feature = "containers"))]
fn container_url(service: Service) -> String {
    panic!(
        "ORCHESTRIX_TEST_CONTAINERS=1 asks for a {service} container, but orchestrix-testkit was \
         built without its `containers` feature (enable it, e.g. `--features orchestrix-testkit/containers`)"
    )
}

/// The `host:port` pairs an address names: a broker list (`a:9092,b:9092`),
/// or a URL with user info, query and several hosts
/// (`scylla://u:p@a:9042,b:9042/ks?x=y`).
///
/// ```
/// use orchestrix_testkit::services::host_ports;
/// assert_eq!(host_ports("127.0.0.1:9092,10.0.0.2:9093"), ["127.0.0.1:9092", "10.0.0.2:9093"]);
/// assert_eq!(host_ports("postgres://postgres:pw@db:5433/test?x=1"), ["db:5433"]);
/// assert_eq!(host_ports("postgres://postgres@db/test"), ["db:5432"]);
/// assert_eq!(host_ports("scylla://a:9042,b/ks"), ["a:9042", "b:9042"]);
/// ```
#[must_use]
pub fn host_ports(address: &str) -> Vec<String> {
    let (scheme, rest) = match address.split_once("://") {
        Some((scheme, rest)) => (Some(scheme), rest),
        None => (None, address),
    };
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let default_port = match scheme {
        Some("postgres" | "postgresql") => Some(5432),
        Some("nats") => Some(4222),
        Some("kafka") => Some(9092),
        Some("scylla" | "cassandra" | "cql") => Some(9042),
        _ => None,
    };
    hosts
        .split(',')
        .filter(|h| !h.is_empty())
        .map(|h| {
            let has_port = h
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok());
            match (has_port, default_port) {
                (false, Some(port)) => format!("{h}:{port}"),
                _ => h.to_owned(),
            }
        })
        .collect()
}

/// Whether any `host:port` of `address` accepts a TCP connection.
#[must_use]
pub fn reachable(address: &str) -> bool {
    host_ports(address).iter().any(|hp| {
        hp.to_socket_addrs()
            .ok()
            .and_then(|mut a| a.next())
            .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(3)).is_ok())
    })
}

/// The address of `service` when it answers; otherwise `None` after printing
/// why the test is skipped.
///
/// # Panics
/// When the service does not answer and `CI=true`: integration tests never
/// pass without their service in CI.
#[must_use]
pub fn require(service: Service) -> Option<String> {
    let address = url(service);
    if reachable(&address) {
        return Some(address);
    }
    let reason = format!(
        "{service} is not reachable at {} (set {} or start it with `bash tests/scripts/services.sh`)",
        redact(&address),
        service.env_var()
    );
    assert!(
        !in_ci(),
        "CI=true and {reason}: a test that needs a service must not pass without it"
    );
    eprintln!("SKIP: {reason}");
    None
}

/// An address with any password replaced by `***` (the core's
/// [`orchestrix::url::redact`]).
///
/// ```
/// use orchestrix_testkit::services::redact;
/// assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
/// assert_eq!(redact("nats://h:4222"), "nats://h:4222");
/// ```
#[must_use]
pub fn redact(address: &str) -> String {
    orchestrix::url::redact(address)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_service_has_a_distinct_env_var_and_a_loopback_default() {
        let vars: std::collections::HashSet<_> = Service::ALL.iter().map(|s| s.env_var()).collect();
        assert_eq!(vars.len(), Service::ALL.len());
        for s in Service::ALL {
            let hp = host_ports(s.default_url());
            assert_eq!(hp.len(), 1, "{s}");
            assert!(hp[0].starts_with("127.0.0.1:"), "{s}: {hp:?}");
        }
    }

    #[test]
    fn blank_env_values_fall_back_to_the_default() {
        assert_eq!(
            url_from_env(Service::Cql, Some("  ".into())),
            "scylla://127.0.0.1:9042"
        );
    }

    #[test]
    fn an_unreachable_address_is_not_reachable() {
        // Port 1 on loopback: nothing listens there.
        assert!(!reachable("127.0.0.1:1"));
        assert!(!reachable(""));
    }
}
