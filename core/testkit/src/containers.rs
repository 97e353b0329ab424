//! The testcontainers path (feature `containers`), for users with a Docker
//! engine: with `ORCHESTRIX_TEST_CONTAINERS=1`, [`services::url`](crate::services::url)
//! and [`services::require`](crate::services::require) start the production
//! images instead of using the addresses in the env vars.
//!
//! Each service runs in one container named `orchestrix-test-<service>`, with
//! a fixed host port on loopback, reused by every test process of the run
//! and by later runs (testcontainers' reusable containers; nextest runs each
//! test in its own process, so one container per test would be far too
//! slow). Remove them with
//! `docker rm -f orchestrix-test-postgres orchestrix-test-nats orchestrix-test-kafka orchestrix-test-scylla`.
//!
//! | service | image | host port |
//! |---|---|---|
//! | PostgreSQL | `postgres:15` (trust auth, db `test`) | 35432 |
//! | NATS | `nats:2.10` with `-js` | 34222 |
//! | Kafka | `apache/kafka:4.1.1`, KRaft, auto-create off | 39092 |
//! | ScyllaDB | `scylladb/scylla:6.2`, one shard, developer mode | 39042 |
//!
//! The machine this project's CI runs on has no Docker engine, so CI starts
//! the same services with `tests/scripts/services.sh` instead; there, only
//! the specs below are tested.
//!
//! ```
//! use orchestrix_testkit::containers::{spec, url_for};
//! use orchestrix_testkit::services::Service;
//! let kafka = spec(Service::Kafka);
//! assert_eq!(kafka.image, "apache/kafka");
//! assert!(kafka.env.iter().any(|(k, v)| k == "KAFKA_ADVERTISED_LISTENERS"
//!     && v == "PLAINTEXT://127.0.0.1:39092"));
//! assert_eq!(url_for(Service::Kafka, "127.0.0.1", 39092), "127.0.0.1:39092");
//! ```

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::SyncRunner as _;
use testcontainers::{GenericImage, ImageExt as _, ReuseDirective};

use crate::services::Service;

/// What it takes to run one service in a container: pure data, so that it
/// can be checked without a Docker engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// Image name.
    pub image: &'static str,
    /// Image tag.
    pub tag: &'static str,
    /// Container name; the same for every test process, so it is reused.
    pub name: String,
    /// Environment variables.
    pub env: Vec<(String, String)>,
    /// Arguments after the image's entry point (empty: the image's default).
    pub cmd: Vec<String>,
    /// The port the service listens on inside the container.
    pub container_port: u16,
    /// The loopback port it is published on.
    pub host_port: u16,
    /// A line the service prints once it is ready.
    pub ready_message: &'static str,
    /// How long the start may take, image pull excluded.
    pub startup_timeout: Duration,
}

/// The container for `service`.
#[must_use]
pub fn spec(service: Service) -> ContainerSpec {
    let env = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    };
    match service {
        Service::Postgres => ContainerSpec {
            image: "postgres",
            tag: "15",
            name: "orchestrix-test-postgres".into(),
            env: env(&[
                ("POSTGRES_HOST_AUTH_METHOD", "trust"),
                ("POSTGRES_DB", "test"),
            ]),
            cmd: vec!["-c".into(), "max_connections=400".into()],
            container_port: 5432,
            host_port: 35432,
            ready_message: "database system is ready to accept connections",
            startup_timeout: Duration::from_secs(60),
        },
        Service::Nats => ContainerSpec {
            image: "nats",
            tag: "2.10",
            name: "orchestrix-test-nats".into(),
            env: Vec::new(),
            cmd: vec!["-js".into()],
            container_port: 4222,
            host_port: 34222,
            ready_message: "Server is ready",
            startup_timeout: Duration::from_secs(30),
        },
        // The broker must advertise the address clients reach it on, so the
        // host port is fixed and part of the advertised listener.
        Service::Kafka => ContainerSpec {
            image: "apache/kafka",
            tag: "4.1.1",
            name: "orchestrix-test-kafka".into(),
            env: env(&[
                ("KAFKA_NODE_ID", "1"),
                ("KAFKA_PROCESS_ROLES", "broker,controller"),
                ("KAFKA_LISTENERS", "PLAINTEXT://:9092,CONTROLLER://:9093"),
                ("KAFKA_ADVERTISED_LISTENERS", "PLAINTEXT://127.0.0.1:39092"),
                ("KAFKA_CONTROLLER_LISTENER_NAMES", "CONTROLLER"),
                (
                    "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP",
                    "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                ),
                ("KAFKA_CONTROLLER_QUORUM_VOTERS", "1@localhost:9093"),
                ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1"),
                ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1"),
                ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"),
                ("KAFKA_AUTO_CREATE_TOPICS_ENABLE", "false"),
                ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0"),
            ]),
            cmd: Vec::new(),
            container_port: 9092,
            host_port: 39092,
            ready_message: "Kafka Server started",
            startup_timeout: Duration::from_secs(90),
        },
        Service::Cql => ContainerSpec {
            image: "scylladb/scylla",
            tag: "6.2",
            name: "orchestrix-test-scylla".into(),
            env: Vec::new(),
            cmd: [
                "--smp",
                "1",
                "--memory",
                "750M",
                "--overprovisioned",
                "1",
                "--developer-mode",
                "1",
            ]
            .map(str::to_owned)
            .to_vec(),
            container_port: 9042,
            host_port: 39042,
            ready_message: "Starting listening for CQL clients",
            startup_timeout: Duration::from_secs(120),
        },
    }
}

/// The address tests use for `service` published on `host:port`.
#[must_use]
pub fn url_for(service: Service, host: &str, port: u16) -> String {
    match service {
        Service::Postgres => format!("postgres://postgres@{host}:{port}/test"),
        Service::Nats => format!("nats://{host}:{port}"),
        Service::Kafka => format!("{host}:{port}"),
        Service::Cql => format!("scylla://{host}:{port}"),
    }
}

/// The address of `service`'s container, starting (or reusing) it first.
///
/// # Panics
/// When the container cannot be started, with the reason (no Docker engine,
/// image not pullable, not ready in time).
#[must_use]
pub fn url(service: Service) -> String {
    static STARTED: OnceLock<Mutex<HashMap<Service, String>>> = OnceLock::new();
    let started = STARTED.get_or_init(|| Mutex::new(HashMap::new()));
    let mut started = started
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(url) = started.get(&service) {
        return url.clone();
    }
    let s = spec(service);
    // The blocking runner makes a runtime of its own, which cannot happen on
    // a Tokio worker thread: start it from a plain thread.
    let result = std::thread::spawn(move || start(&s))
        .join()
        .unwrap_or_else(|_| Err("the container start panicked".to_owned()));
    let url = match result {
        Ok(url) => url,
        Err(reason) => panic!(
            "ORCHESTRIX_TEST_CONTAINERS=1 but the {service} container did not start: {reason}"
        ),
    };
    started.insert(service, url.clone());
    url
}

fn start(s: &ContainerSpec) -> Result<String, String> {
    let image = GenericImage::new(s.image, s.tag)
        .with_exposed_port(ContainerPort::Tcp(s.container_port))
        .with_wait_for(WaitFor::message_on_either_std(s.ready_message));
    let mut request = image
        .with_container_name(s.name.clone())
        .with_mapped_port(s.host_port, ContainerPort::Tcp(s.container_port))
        .with_startup_timeout(s.startup_timeout)
        .with_reuse(ReuseDirective::Always);
    for (k, v) in &s.env {
        request = request.with_env_var(k.clone(), v.clone());
    }
    if !s.cmd.is_empty() {
        request = request.with_cmd(s.cmd.clone());
    }
    let container = request.start().map_err(|e| e.to_string())?;
    let port = container
        .get_host_port_ipv4(ContainerPort::Tcp(s.container_port))
        .map_err(|e| e.to_string())?;
    // Reused on purpose: the container outlives this process.
    std::mem::forget(container);
    Ok(url_for(spec_service(s), "127.0.0.1", port))
}

fn spec_service(s: &ContainerSpec) -> Service {
    Service::ALL
        .into_iter()
        .find(|svc| spec(*svc).name == s.name)
        .unwrap_or(Service::Postgres)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::host_ports;

    #[test]
    fn each_service_has_its_own_container_name_and_host_port() {
        let specs: Vec<_> = Service::ALL.into_iter().map(spec).collect();
        let names: std::collections::HashSet<_> = specs.iter().map(|s| s.name.clone()).collect();
        let ports: std::collections::HashSet<_> = specs.iter().map(|s| s.host_port).collect();
        assert_eq!(names.len(), specs.len());
        assert_eq!(ports.len(), specs.len());
        for s in &specs {
            assert!(s.name.starts_with("orchestrix-test-"), "{}", s.name);
            assert!(!s.ready_message.is_empty());
            assert!(s.startup_timeout >= Duration::from_secs(30));
        }
    }

    #[test]
    fn urls_point_at_the_published_port_and_parse_back() {
        for service in Service::ALL {
            let s = spec(service);
            let url = url_for(service, "127.0.0.1", s.host_port);
            assert_eq!(
                host_ports(&url),
                [format!("127.0.0.1:{}", s.host_port)],
                "{service}: {url}"
            );
            assert_eq!(spec_service(&s), service);
        }
    }

    #[test]
    fn kafka_advertises_the_published_port_with_auto_create_off() {
        let s = spec(Service::Kafka);
        let get = |k: &str| {
            s.env
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(
            get("KAFKA_ADVERTISED_LISTENERS"),
            Some(format!("PLAINTEXT://127.0.0.1:{}", s.host_port).as_str())
        );
        assert_eq!(get("KAFKA_AUTO_CREATE_TOPICS_ENABLE"), Some("false"));
        assert_eq!(get("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"), Some("1"));
        assert_eq!(get("KAFKA_PROCESS_ROLES"), Some("broker,controller"));
    }

    #[test]
    fn postgres_trusts_and_creates_the_test_database() {
        let s = spec(Service::Postgres);
        assert!(
            s.env
                .contains(&("POSTGRES_HOST_AUTH_METHOD".into(), "trust".into()))
        );
        assert!(s.env.contains(&("POSTGRES_DB".into(), "test".into())));
        assert!(url_for(Service::Postgres, "h", 1).ends_with("/test"));
    }

    #[test]
    fn nats_runs_with_jetstream_and_scylla_in_developer_mode() {
        assert_eq!(spec(Service::Nats).cmd, ["-js"]);
        let scylla = spec(Service::Cql).cmd.join(" ");
        assert!(scylla.contains("--developer-mode 1"), "{scylla}");
        assert!(scylla.contains("--smp 1"), "{scylla}");
    }
}
