//! The files under `docker/` (no Docker engine runs on CI): every YAML
//! document parses, compose has the production set, the worker
//! configurations they mount are valid `WorkerConfig`s, and the Kubernetes
//! manifests agree with the worker (probe paths and port, a grace period
//! longer than the worker's, resources, non-root). `docker/validate.sh`
//! adds the schema check of the manifests.

use std::path::{Path, PathBuf};

use orchestrix_worker::WorkerConfig;
use serde_yaml::Value;

fn docker_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docker")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

fn documents(path: &Path) -> Vec<Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| {
            serde::Deserialize::deserialize(d).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        })
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn one(path: &str) -> Value {
    let mut docs = documents(&docker_dir().join(path));
    assert_eq!(docs.len(), 1, "{path}");
    docs.remove(0)
}

fn get<'a>(v: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(v, |v, k| match k.parse::<usize>() {
        Ok(i) => &v[i],
        Err(_) => &v[k],
    })
}

fn str_of<'a>(v: &'a Value, path: &str) -> &'a str {
    get(v, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string: {:?}", get(v, path)))
}

#[test]
fn every_yaml_document_parses() {
    let mut files = Vec::new();
    yaml_files(&docker_dir(), &mut files);
    assert!(files.len() >= 8, "{files:?}");
    for f in &files {
        assert!(!documents(f).is_empty(), "{}: no document", f.display());
    }
}

#[test]
fn compose_runs_the_production_set_and_the_workers() {
    let compose = one("compose.yaml");
    let services = get(&compose, "services").as_mapping().unwrap();
    for name in [
        "kafka",
        "schema-registry",
        "nats",
        "postgres",
        "scylla",
        "prometheus",
        "otel-collector",
        "bank-worker",
    ] {
        assert!(services.contains_key(name), "compose has no `{name}`");
    }
    let kafka = get(&compose, "services.kafka.environment");
    assert!(
        str_of(kafka, "KAFKA_PROCESS_ROLES").contains("controller"),
        "Kafka runs in KRaft mode"
    );
    assert_eq!(
        str_of(kafka, "CLUSTER_ID").len(),
        22,
        "a KRaft cluster id is a base64 UUID"
    );
    let nats = format!("{:?}", get(&compose, "services.nats.command"));
    assert!(nats.contains("--jetstream"), "NATS with JetStream");
    let worker = get(&compose, "services.bank-worker");
    assert_eq!(str_of(worker, "build.dockerfile"), "docker/Dockerfile");
    assert!(
        str_of(worker, "environment.OTEL_EXPORTER_OTLP_ENDPOINT").contains("otel-collector:4318")
    );
    let url = str_of(worker, "environment.ORCHESTRIX_STORE_URL");
    assert!(
        url.starts_with("postgres://") && url.contains("@postgres:5432/"),
        "{url}"
    );
    // A second worker runs the same image on the ScyllaDB store, which the
    // image is built to support.
    let scylla_worker = get(&compose, "services.bank-worker-scylla");
    assert_eq!(
        str_of(scylla_worker, "image"),
        str_of(worker, "image"),
        "the same image"
    );
    let scylla_url = str_of(scylla_worker, "environment.ORCHESTRIX_STORE_URL");
    assert!(
        scylla_url.starts_with("scylla://scylla:9042/"),
        "{scylla_url}"
    );
    let dockerfile = std::fs::read_to_string(docker_dir().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.contains("scylla"),
        "the image is built with the `scylla` feature"
    );
    // Every file compose mounts exists.
    for service in services.values() {
        for volume in service["volumes"].as_sequence().into_iter().flatten() {
            let source = volume.as_str().unwrap().split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(
                    docker_dir().join(source).exists(),
                    "compose mounts a missing `{source}`"
                );
            }
        }
    }
    // The worker's configuration is valid, and Prometheus scrapes its port.
    let config = WorkerConfig::from_file(&docker_dir().join("config/worker.toml")).unwrap();
    let prometheus = one("config/prometheus.yml");
    let target = str_of(&prometheus, "scrape_configs.0.static_configs.0.targets.0");
    assert_eq!(target, format!("bank-worker:{}", config.http.listen.port()));
    let stop = str_of(worker, "stop_grace_period")
        .trim_end_matches('s')
        .parse::<u64>()
        .unwrap();
    assert!(
        stop * 1000 > config.shutdown.grace_period_ms,
        "docker stop waits longer than the worker drains"
    );
    let collector = one("config/otel-collector.yaml");
    assert!(get(&collector, "receivers.otlp.protocols.http").is_mapping());
}

#[test]
fn the_dockerfile_builds_a_worker_binary_of_the_banking_demo_as_non_root() {
    let dockerfile = std::fs::read_to_string(docker_dir().join("Dockerfile")).unwrap();
    assert!(
        dockerfile.matches("\nFROM ").count() + usize::from(dockerfile.starts_with("FROM ")) >= 2,
        "multi-stage"
    );
    assert!(
        dockerfile.contains("FROM debian:bookworm-slim"),
        "a small runtime image"
    );
    let user = dockerfile
        .lines()
        .rev()
        .find(|l| l.starts_with("USER "))
        .expect("a USER");
    assert!(!user.contains("root") && !user.ends_with(" 0"), "{user}");
    let banking = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../demos/banking/Cargo.toml"),
    )
    .unwrap();
    assert!(banking.contains("name = \"orchestrix-demo-banking-worker\""));
    assert!(dockerfile.contains("--bin orchestrix-demo-banking-worker"));
}

#[test]
fn the_kubernetes_manifests_agree_with_the_worker() {
    let configmap = one("k8s/configmap.yaml");
    let config = WorkerConfig::from_toml(
        get(&configmap, "data")["worker.toml"].as_str().unwrap(),
        "the ConfigMap",
    )
    .unwrap();
    let deployment = one("k8s/deployment.yaml");
    assert_eq!(str_of(&deployment, "kind"), "Deployment");
    let pod = get(&deployment, "spec.template.spec");
    let grace = get(pod, "terminationGracePeriodSeconds").as_u64().unwrap();
    assert!(
        grace * 1000 > config.shutdown.grace_period_ms,
        "Kubernetes waits longer than the worker drains"
    );
    assert_eq!(
        get(pod, "securityContext.runAsNonRoot").as_bool(),
        Some(true)
    );
    let container = get(pod, "containers.0");
    let port = get(container, "ports.0");
    assert_eq!(
        get(port, "containerPort").as_u64(),
        Some(u64::from(config.http.listen.port()))
    );
    let port_name = str_of(port, "name");
    for (probe, path) in [("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")] {
        assert_eq!(str_of(container, &format!("{probe}.httpGet.path")), path);
        assert_eq!(
            str_of(container, &format!("{probe}.httpGet.port")),
            port_name
        );
    }
    for r in [
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ] {
        assert!(
            !get(container, &format!("resources.{r}")).is_null(),
            "resources.{r}"
        );
    }
    let secret = one("k8s/secret.yaml");
    let env = get(container, "env").as_sequence().unwrap();
    let from_secret = env
        .iter()
        .find(|e| e["name"] == "ORCHESTRIX_STORE_URL")
        .expect("the store URL from the Secret");
    assert_eq!(
        from_secret["valueFrom"]["secretKeyRef"]["name"],
        secret["metadata"]["name"]
    );
    assert!(
        secret["stringData"]["ORCHESTRIX_STORE_URL"]
            .as_str()
            .unwrap()
            .starts_with("postgres://")
    );
    let service = one("k8s/service.yaml");
    assert_eq!(
        get(&service, "spec.selector"),
        get(&deployment, "spec.selector.matchLabels")
    );
    let scaled = one("k8s/scaledobject.yaml");
    assert_eq!(
        get(&scaled, "spec.scaleTargetRef.name"),
        get(&deployment, "metadata.name")
    );
    assert!(
        str_of(&scaled, "spec.triggers.0.metadata.query")
            .contains("orchestrix_consumer_lag_events")
    );
}
