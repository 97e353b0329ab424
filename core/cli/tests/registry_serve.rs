//! `orchestrix registry serve` as a user runs it: the real binary in a child
//! process, spoken to over plain HTTP/1.1 with Confluent's content type, on
//! every storage (memory, a SQLite file that outlives the process, PostgreSQL).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use uuid::Uuid;

const CT: &str = "application/vnd.schemaregistry.v1+json";
const SUBJECT: &str = "com.acme.bank.Opened";
const V1: &str = r#"{"type":"record","name":"Opened","namespace":"com.acme.bank","fields":[{"name":"owner","type":"string"}]}"#;
/// V1 plus a field with a default: BACKWARD compatible.
const V2: &str = r#"{"type":"record","name":"Opened","namespace":"com.acme.bank","fields":[{"name":"owner","type":"string"},{"name":"branch","type":"string","default":"main"}]}"#;
/// V2 plus a field without a default: a v3 reader cannot read v2 data.
const V3_BREAKING: &str = r#"{"type":"record","name":"Opened","namespace":"com.acme.bank","fields":[{"name":"owner","type":"string"},{"name":"branch","type":"string","default":"main"},{"name":"iban","type":"string"}]}"#;

/// A running `orchestrix registry serve`; killed when dropped, so a failed
/// assertion never leaves a server behind.
struct Served {
    child: Child,
    addr: String,
    /// Held open so that the server never writes into a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Served {
    /// Starts the binary on a port the OS picks and waits for its
    /// "listening on" line, which it prints once the socket is bound.
    fn start(storage: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_orchestrix"))
            .args(["registry", "serve", "--listen", "127.0.0.1:0", "--storage"])
            .arg(storage)
            .env_remove("ORCHESTRIX_REGISTRY_STORAGE")
            .env_remove("ORCHESTRIX_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            // Its errors show in the test's output.
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start orchestrix registry serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read the first line");
        let Some(addr) = line
            .trim_end()
            .strip_prefix("schema registry listening on http://")
            .and_then(|rest| rest.split_once(' '))
            .map(|(addr, _)| addr.to_owned())
        else {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "no listening line but {line:?}; the server ended with {status:?} (its stderr is above)"
            );
        };
        Self {
            child,
            addr,
            _stdout: stdout,
        }
    }

    /// One request; the status, the content type and the body (JSON when
    /// it parses, else a JSON string).
    fn http(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, String, Value) {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut stream = TcpStream::connect(&self.addr).expect("connect to the registry");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        write!(
            stream,
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAccept: {CT}\r\nContent-Type: {CT}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            body.len()
        )
        .unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("read the answer");
        let (head, text) = raw
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("not HTTP: {raw:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status: {head}"));
        let content_type = head
            .lines()
            .find_map(|l| {
                let l = l.to_ascii_lowercase();
                l.strip_prefix("content-type: ").map(str::to_owned)
            })
            .unwrap_or_default();
        let value = serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_owned()));
        (status, content_type, value)
    }

    /// A request that must answer 200 with Confluent's content type.
    fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (status, ct, value) = self.http(method, path, body);
        assert_eq!((status, ct.as_str()), (200, CT), "{method} {path}: {value}");
        value
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn schema(text: &str) -> Value {
    json!({ "schema": text })
}

fn parsed(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

/// Every endpoint a Confluent client uses, on a registry that starts empty.
fn exercise(r: &Served) -> u64 {
    let (status, _, body) = r.http("GET", "/healthz", None);
    assert_eq!((status, body), (200, json!("ok\n")));
    assert_eq!(r.ok("GET", "/subjects", None), json!([]));
    assert_eq!(
        r.ok("GET", "/config", None),
        json!({"compatibilityLevel": "BACKWARD"})
    );

    // Register, and register the same schema again (other whitespace): same id.
    let path = format!("/subjects/{SUBJECT}/versions");
    assert_eq!(r.ok("POST", &path, Some(&schema(V1))), json!({"id": 1}));
    let pretty = serde_json::to_string_pretty(&parsed(V1)).unwrap();
    assert_eq!(
        r.ok("POST", &path, Some(&schema(&pretty))),
        json!({"id": 1})
    );

    // Compatibility against the latest version, before registering.
    let check = format!("/compatibility/subjects/{SUBJECT}/versions/latest");
    assert_eq!(
        r.ok("POST", &check, Some(&schema(V2))),
        json!({"is_compatible": true})
    );
    assert_eq!(
        r.ok("POST", &check, Some(&schema(V3_BREAKING))),
        json!({"is_compatible": false})
    );
    let verbose = r.ok(
        "POST",
        &format!("{check}?verbose=true"),
        Some(&schema(V3_BREAKING)),
    );
    assert_eq!(verbose["is_compatible"], false);
    assert!(
        verbose["messages"][0]
            .as_str()
            .unwrap()
            .contains("field `iban` added without a default"),
        "{verbose}"
    );

    // An incompatible registration is refused with 409, saying why.
    let (status, ct, body) = r.http("POST", &path, Some(&schema(V3_BREAKING)));
    assert_eq!(
        (status, ct.as_str(), &body["error_code"]),
        (409, CT, &json!(409))
    );
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "Schema being registered is incompatible with an earlier schema for subject \"{SUBJECT}\""
        )) && message.contains("field `iban` added without a default"),
        "{message}"
    );

    // The compatible one is version 2; under another subject it keeps its id.
    assert_eq!(r.ok("POST", &path, Some(&schema(V2))), json!({"id": 2}));
    assert_eq!(
        r.ok("POST", "/subjects/other/versions", Some(&schema(V2))),
        json!({"id": 2})
    );
    assert_eq!(r.ok("GET", "/subjects", None), json!([SUBJECT, "other"]));
    assert_eq!(r.ok("GET", &path, None), json!([1, 2]));
    assert_eq!(
        r.ok("GET", &format!("{path}/latest"), None),
        json!({"subject": SUBJECT, "version": 2, "id": 2, "schema": V2})
    );
    assert_eq!(
        r.ok("GET", &format!("{path}/1"), None),
        json!({"subject": SUBJECT, "version": 1, "id": 1, "schema": V1})
    );
    assert_eq!(r.ok("GET", &format!("{path}/1/schema"), None), parsed(V1));

    // Lookup: is this schema registered under the subject?
    assert_eq!(
        r.ok("POST", &format!("/subjects/{SUBJECT}"), Some(&schema(V1))),
        json!({"subject": SUBJECT, "version": 1, "id": 1, "schema": V1})
    );

    // By id: the schema, the schema alone, where it is used.
    assert_eq!(r.ok("GET", "/schemas/ids/2", None), json!({"schema": V2}));
    assert_eq!(r.ok("GET", "/schemas/ids/2/schema", None), parsed(V2));
    assert_eq!(
        r.ok("GET", "/schemas/ids/2/versions", None),
        json!([{"subject": SUBJECT, "version": 2}, {"subject": "other", "version": 1}])
    );
    assert_eq!(r.ok("GET", "/schemas/types", None), json!(["AVRO"]));

    // Errors, with Confluent's codes.
    let err = |code: u32, message: &str| json!({"error_code": code, "message": message});
    assert_eq!(
        r.http("GET", "/subjects/nope/versions", None),
        (404, CT.into(), err(40401, "Subject 'nope' not found."))
    );
    assert_eq!(
        r.http("GET", "/subjects/nope/versions/latest", None),
        (404, CT.into(), err(40401, "Subject 'nope' not found."))
    );
    assert_eq!(
        r.http("GET", "/schemas/ids/99", None),
        (404, CT.into(), err(40403, "Schema 99 not found"))
    );
    assert_eq!(
        r.http("GET", "/schemas/ids/99/versions", None),
        (404, CT.into(), err(40403, "Schema 99 not found"))
    );
    let (status, ct, body) = r.http(
        "POST",
        &path,
        Some(&schema(r#"{"type":"record","name":"X"}"#)),
    );
    assert_eq!(
        (status, ct.as_str(), &body["error_code"]),
        (422, CT, &json!(42201))
    );
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid schema"),
        "{body}"
    );

    // Per-subject config: NONE lets the breaking schema in; global stays.
    assert_eq!(
        r.ok(
            "PUT",
            &format!("/config/{SUBJECT}"),
            Some(&json!({"compatibility": "NONE"}))
        ),
        json!({"compatibility": "NONE"})
    );
    assert_eq!(
        r.ok("GET", &format!("/config/{SUBJECT}"), None),
        json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(
        r.ok("GET", "/config", None),
        json!({"compatibilityLevel": "BACKWARD"})
    );
    // A new schema gets a new id. Ids are unique and stable, not dense: the
    // SQL storages let a schema insert that found its schema there already
    // use up a sequence value (memory gives 3 here, SQLite and PostgreSQL 4),
    // as Confluent's own ids have gaps.
    let breaking = r.ok("POST", &path, Some(&schema(V3_BREAKING)))["id"]
        .as_u64()
        .expect("an id");
    assert!(breaking > 2, "{breaking}");

    // Deleting a subject removes its versions; the id stays readable.
    assert_eq!(r.ok("DELETE", "/subjects/other", None), json!([1]));
    assert_eq!(r.ok("GET", "/subjects", None), json!([SUBJECT]));
    assert_eq!(r.ok("GET", "/schemas/ids/2", None), json!({"schema": V2}));
    breaking
}

/// What `exercise` left (`breaking` is the id it got for the breaking
/// schema), as a restarted registry must still show it.
fn still_there(r: &Served, breaking: u64) {
    let path = format!("/subjects/{SUBJECT}/versions");
    assert_eq!(r.ok("GET", "/subjects", None), json!([SUBJECT]));
    assert_eq!(r.ok("GET", &path, None), json!([1, 2, 3]));
    assert_eq!(
        r.ok("GET", &format!("{path}/latest"), None),
        json!({"subject": SUBJECT, "version": 3, "id": breaking, "schema": V3_BREAKING})
    );
    assert_eq!(r.ok("GET", "/schemas/ids/1", None), json!({"schema": V1}));
    assert_eq!(
        r.ok("GET", &format!("/config/{SUBJECT}"), None),
        json!({"compatibilityLevel": "NONE"})
    );
    assert_eq!(
        r.ok("GET", &format!("/schemas/ids/{breaking}"), None),
        json!({"schema": V3_BREAKING})
    );
    // The same schema under a new subject gets its old id; a new schema an
    // id never given before.
    assert_eq!(
        r.ok("POST", "/subjects/again/versions", Some(&schema(V1))),
        json!({"id": 1})
    );
    let fresh = r.ok(
        "POST",
        "/subjects/fresh/versions",
        Some(&schema(r#""string""#)),
    )["id"]
        .as_u64()
        .expect("an id");
    assert!(fresh > breaking, "{fresh} after {breaking}");
}

#[test]
fn serves_from_memory() {
    let served = Served::start("memory://");
    exercise(&served);
}

#[test]
fn serves_from_a_sqlite_file_that_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let storage = format!("sqlite://{}", dir.path().join("registry.db").display());
    let served = Served::start(&storage);
    let breaking = exercise(&served);
    // Killed, not shut down: what was acknowledged is on disk.
    drop(served);
    let served = Served::start(&storage);
    still_there(&served, breaking);
}

#[test]
fn serves_from_postgres_that_survives_a_restart() {
    let Some(base) =
        orchestrix_testkit::services::require(orchestrix_testkit::services::Service::Postgres)
    else {
        return;
    };
    // The registry's tables (`schema_registry_*`) in a schema of their own,
    // named as in the event store's URLs and created by the registry; a
    // fresh one per run keeps runs on the same database apart.
    let schema = format!("registry_{}", Uuid::new_v4().simple());
    let sep = if base.contains('?') { '&' } else { '?' };
    let storage = format!("{base}{sep}schema={schema}");
    let served = Served::start(&storage);
    let breaking = exercise(&served);
    drop(served);
    let served = Served::start(&storage);
    still_there(&served, breaking);
    drop(served);
    // The tables are in that schema: a registry whose connection only puts
    // that schema in its search path (the driver's own way) sees them.
    let served = Served::start(&format!("{base}{sep}options=-c%20search_path%3D{schema}"));
    assert_eq!(
        served.ok("GET", "/subjects", None),
        json!(["again", SUBJECT, "fresh"])
    );
}

#[test]
fn a_postgres_failure_says_what_failed() {
    let Some(base) =
        orchestrix_testkit::services::require(orchestrix_testkit::services::Service::Postgres)
    else {
        return;
    };
    // A database that does not exist: the server's own words, not "db error".
    let (address, query) = base.split_once('?').unwrap_or((&base, ""));
    let (server, _database) = address.rsplit_once('/').expect("a database in the URL");
    let url = format!("{server}/no_such_database_for_the_registry?{query}");
    let output = Command::new(env!("CARGO_BIN_EXE_orchestrix"))
        .args(["registry", "serve", "--listen", "127.0.0.1:0", "--storage"])
        .arg(&url)
        .env_remove("ORCHESTRIX_REGISTRY_STORAGE")
        .env_remove("ORCHESTRIX_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot connect")
            && stderr.contains("\"no_such_database_for_the_registry\" does not exist")
            && !stderr.contains("db error"),
        "{stderr}"
    );
    // A schema name the event store would refuse is refused the same way.
    let sep = if base.contains('?') { '&' } else { '?' };
    let output = Command::new(env!("CARGO_BIN_EXE_orchestrix"))
        .args(["registry", "serve", "--listen", "127.0.0.1:0", "--storage"])
        .arg(format!("{base}{sep}schema=Bad-Name"))
        .env_remove("ORCHESTRIX_REGISTRY_STORAGE")
        .env_remove("ORCHESTRIX_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("schema name `Bad-Name`"), "{stderr}");
}

/// Kubernetes and `docker stop` send SIGTERM: the server stops gracefully
/// and exits 0, as on Ctrl-C.
#[cfg(unix)]
#[test]
fn sigterm_and_sigint_stop_it_gracefully() {
    for signal in ["TERM", "INT"] {
        let mut served = Served::start("memory://");
        exercise(&served);
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(served.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}: {status}");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let exit = loop {
            if let Some(exit) = served.child.try_wait().unwrap() {
                break exit;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running 10 s after SIG{signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(exit.code(), Some(0), "after SIG{signal}: {exit}");
    }
}

#[test]
fn an_unknown_storage_is_a_usage_error() {
    let output = Command::new(env!("CARGO_BIN_EXE_orchestrix"))
        .args([
            "registry",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--storage",
            "mysql://x",
        ])
        .env_remove("ORCHESTRIX_CONFIG")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("unknown registry storage URL `mysql://x`"),
        "{stderr}"
    );
}
