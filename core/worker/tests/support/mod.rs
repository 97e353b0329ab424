//! A small application for the worker tests (a `tally` aggregate and a
//! `ledger` projection that writes one line per handled event to a file),
//! and helpers to run it in child processes.

#![allow(dead_code)] // each test file uses a part

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use orchestrix::runtime::{ConsumerConfig, Projection};
use orchestrix::store::Filter;
use orchestrix::{Aggregate, Application, Event, RecordedEvent, Store};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Event)]
#[event(prefix = "com.test.worker")]
pub enum TallyEvent {
    Added,
}

#[derive(Debug)]
pub struct Add(pub String);

impl orchestrix::Command for Add {
    fn aggregate_id(&self) -> String {
        self.0.clone()
    }
    fn command_type(&self) -> &'static str {
        "Add"
    }
}

#[derive(Debug, thiserror::Error)]
#[error("never")]
pub struct Never;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Tally;

impl Aggregate for Tally {
    const CATEGORY: &'static str = "tally";
    type Command = Add;
    type Event = TallyEvent;
    type Error = Never;
    fn handle(&self, _: &Add) -> Result<Vec<TallyEvent>, Never> {
        Ok(vec![TallyEvent::Added])
    }
    fn apply(&mut self, _: &TallyEvent) {}
}

/// Appends `{position} {event id} {trace id}` per handled event to a file
/// (the read model whose lines show what was lost or applied twice).
#[derive(Debug)]
pub struct Ledger {
    pub path: Option<PathBuf>,
    pub delay: Duration,
}

#[async_trait]
impl Projection for Ledger {
    fn name(&self) -> &str {
        "ledger"
    }
    fn filter(&self) -> Filter {
        Filter::all().categories(["tally"])
    }
    async fn apply(&self, event: &RecordedEvent) -> orchestrix::Result<()> {
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        let trace = orchestrix::telemetry::inject(&tracing::Span::current())
            .map_or_else(|| "-".to_owned(), |t| t.trace_id().to_owned());
        if let Some(path) = &self.path {
            // One write per line: appends of one `write` do not interleave.
            let line = format!("{} {} {trace}\n", event.position, event.id());
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .expect("ledger file");
            file.write_all(line.as_bytes()).expect("ledger write");
        }
        Ok(())
    }
    async fn reset(&self) -> orchestrix::Result<()> {
        Ok(())
    }
}

/// The test application: the aggregate, and the ledger under `consumer`.
pub fn app(store: Store, ledger: Ledger, consumer: ConsumerConfig) -> Application {
    Application::builder(store)
        .aggregate::<Tally>()
        .projection_with(Arc::new(ledger), consumer)
        .build()
        .unwrap()
}

/// Executes `n` commands over `streams` streams.
pub async fn add(app: &Application, n: usize, streams: usize) {
    for i in 0..n {
        app.execute(Add(format!("s{}", i % streams))).await.unwrap();
    }
}

/// The ledger's lines: (position, event id, trace id).
pub fn ledger_lines(path: &Path) -> Vec<(u64, String, String)> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let mut parts = l.split(' ');
            let position = parts.next().unwrap().parse().unwrap();
            (
                position,
                parts.next().unwrap().to_owned(),
                parts.next().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until `check` holds, or panics after `limit`.
pub async fn eventually(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !check() {
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A GET over a fresh connection: (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).expect("utf-8 response");
    let (head, body) = response.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status");
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    (
        status,
        if chunked {
            dechunk(body)
        } else {
            body.to_owned()
        },
    )
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// Whether this run is CI, where a missing service fails the test.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A PostgreSQL URL with a fresh schema, or `None` (after printing why)
/// when the server is unreachable outside CI; in CI that panics.
pub async fn postgres_url() -> Option<String> {
    let base = orchestrix_postgres::testing::url();
    if let Err(why) = orchestrix_postgres::testing::probe().await {
        assert!(
            !in_ci(),
            "CI=true and PostgreSQL at {base} is unreachable: {why}"
        );
        eprintln!(
            "skipping: PostgreSQL at {base} is unreachable ({why}); set ORCHESTRIX_POSTGRES_URL"
        );
        return None;
    }
    let sep = if base.contains('?') { '&' } else { '?' };
    Some(format!(
        "{base}{sep}schema={}",
        orchestrix_postgres::testing::random_schema()
    ))
}

/// The environment variable that puts a test binary in child mode.
pub const CHILD: &str = "ORCHESTRIX_WORKER_TEST_CHILD";

/// A child process, killed if the test ends (or panics) while it runs.
#[derive(Debug)]
pub struct ChildProcess(Child);

impl std::ops::Deref for ChildProcess {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for ChildProcess {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Runs test `name` of this test binary in a child process, with `env`.
pub fn spawn_child(name: &str, env: &[(&str, String)]) -> ChildProcess {
    let exe = std::env::current_exe().expect("the test binary");
    let mut command = Command::new(exe);
    command
        .args(["--exact", name, "--nocapture", "--test-threads", "1"])
        .env(CHILD, "1")
        .env_remove("NEXTEST_TEST_FILTER")
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::inherit());
    for (k, v) in env {
        command.env(k, v);
    }
    ChildProcess(command.spawn().expect("spawn a child worker"))
}

/// Sends SIGTERM, the way Kubernetes stops a pod.
pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -TERM failed");
}

/// Waits for a child to exit, at most `limit`; kills it and panics past that.
pub async fn wait_exit(child: &mut Child, limit: Duration) -> (std::process::ExitStatus, Duration) {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return (status, started.elapsed());
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("the child did not exit within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Reads the address a child worker wrote to `path`.
pub async fn child_addr(path: &Path, child: &mut Child) -> SocketAddr {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(addr) = text.trim().parse()
        {
            return addr;
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the child exited before serving: {status}");
        }
        assert!(Instant::now() < deadline, "the child did not start serving");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
