//! The web console in headless Chromium (Debian's `chromium` and
//! `chromium-driver`), driven over WebDriver: every page loads with data
//! from a real store, the dead-letter replay button (with the token) hands
//! the letter to its handler once and the letter is gone, a screenshot of
//! each page lands in `target/console-screenshots/`, and the browser's
//! console log has no errors. Without chromium the test skips, except in CI
//! (`CI=true`), where it fails.

mod support;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fantoccini::{Client, ClientBuilder, Locator};
use orchestrix::runtime::{Delivery, EventHandler};
use orchestrix::{Application, RecordedEvent, Result};
use orchestrix_ops::Operations;
use orchestrix_ops::console::Console;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const TOKEN: &str = "s3cret-console-token";
const BASE: &str = "/console";

/// Counts the events it is handed, by id.
#[derive(Debug, Default)]
struct Mailer {
    seen: Mutex<HashMap<uuid::Uuid, u32>>,
}

#[async_trait]
impl EventHandler for Mailer {
    fn name(&self) -> &str {
        "mailer"
    }
    async fn handle(&self, event: &RecordedEvent, _: &Delivery) -> Result<()> {
        *self
            .seen
            .lock()
            .unwrap()
            .entry(event.record.id)
            .or_default() += 1;
        Ok(())
    }
}

fn browser_available() -> bool {
    let present =
        std::path::Path::new(CHROMIUM).exists() && std::path::Path::new(CHROMEDRIVER).exists();
    if !present {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
        assert!(
            !ci,
            "CI=true but {CHROMIUM} or {CHROMEDRIVER} is missing (apt-get install chromium chromium-driver)"
        );
        eprintln!("skipped: {CHROMIUM} or {CHROMEDRIVER} missing");
    }
    present
}

fn screenshots() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    );
    let dir = target.join("console-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One HTTP/1.1 request over a fresh connection: (status, body).
async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    // Read the head, then Content-Length bytes or chunks (the peer may keep
    // the connection open).
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before the response head");
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .map(|v| v.trim().parse::<usize>().unwrap());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &raw[head_end..];
        let done = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.windows(5).any(|w| w == b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = stream.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
    }
    let body = String::from_utf8_lossy(&raw[head_end..]).into_owned();
    let body = if chunked { dechunk(&body) } else { body };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    let port = free_port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start chromedriver");
    let driver = Driver {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
    };
    // Ready when /status answers.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if tokio::net::TcpStream::connect(driver.addr).await.is_ok() {
            let (status, _) = http(driver.addr, "GET", "/status", &[], "").await;
            if status == 200 {
                return driver;
            }
        }
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(50)).await; // poll interval, not synchronisation
    }
}

async fn browser(driver: &Driver, profile: &std::path::Path) -> Client {
    let caps = serde_json::json!({
        "browserName": "chrome",
        "goog:loggingPrefs": { "browser": "ALL" },
        "goog:chromeOptions": {
            "binary": CHROMIUM,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                "--no-first-run", "--disable-background-networking",
                "--disable-component-update", "--disable-sync",
                "--window-size=1280,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    let serde_json::Value::Object(caps) = caps else {
        unreachable!()
    };
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&format!("http://{}", driver.addr))
        .await
        .expect("a chromium session")
}

/// The browser's console entries since the last call (chromedriver's log
/// endpoint).
async fn browser_log(driver: &Driver, client: &Client) -> Vec<serde_json::Value> {
    let session = client.session_id().await.unwrap().unwrap();
    let (status, body) = http(
        driver.addr,
        "POST",
        &format!("/session/{session}/se/log"),
        &[("Content-Type", "application/json")],
        r#"{"type":"browser"}"#,
    )
    .await;
    assert_eq!(status, 200, "log endpoint: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["value"].as_array().cloned().unwrap_or_default()
}

/// Waits (polling the page) until `f` holds.
async fn until<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await; // poll interval
    }
}

async fn text_of(client: &Client, css: &str) -> String {
    client
        .find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .text()
        .await
        .unwrap()
}

async fn visit(
    client: &Client,
    base: &str,
    path: &str,
    shot: &str,
    dir: &std::path::Path,
) -> String {
    client.goto(&format!("{base}{path}")).await.unwrap();
    let body = text_of(client, "body").await;
    let png = client.screenshot().await.unwrap();
    std::fs::write(dir.join(format!("{shot}.png")), png).unwrap();
    body
}

async fn console_in_chromium(url: &str, shot_prefix: &str) {
    let store = orchestrix_backends::open_store(url).await.unwrap();
    let seeded = support::seed(&store).await;
    let mailer = Arc::new(Mailer::default());
    let app = Application::builder(store.clone())
        .handler(mailer.clone())
        .module(orchestrix_demo_banking::BankModule::default())
        .build()
        .unwrap();
    let console = Console::new(Operations::application(app))
        .base(BASE)
        .token(Some(TOKEN.to_owned()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, console.router()).await });
    let base = format!("http://{addr}{BASE}");

    // Actions without the token are refused (outside the browser, whose log
    // would show the 403).
    let mailer_letter = seeded.letters[2];
    let replay = format!("{BASE}/dlq/{mailer_letter}/replay");
    let (status, body) = http(addr, "POST", &replay, &[], "").await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = http(
        addr,
        "POST",
        &replay,
        &[("Authorization", "Bearer wrong")],
        "",
    )
    .await;
    assert_eq!(status, 403);
    assert!(mailer.seen.lock().unwrap().is_empty());

    let driver = start_driver().await;
    let profile = tempfile::tempdir().unwrap();
    let client = browser(&driver, profile.path()).await;
    let dir = screenshots();
    let shot = |name: &str| format!("{shot_prefix}-{name}");

    let body = visit(&client, &base, "/", &shot("overview"), &dir).await;
    assert!(body.contains("dead letters"), "{body}");
    assert_eq!(
        text_of(&client, "#overview tbody tr:nth-child(5) td:nth-child(2)").await,
        "3"
    );

    let body = visit(&client, &base, "/streams", &shot("categories"), &dir).await;
    assert!(body.contains("account") && body.contains("order"), "{body}");
    let body = visit(
        &client,
        &base,
        "/streams?category=account",
        &shot("streams"),
        &dir,
    )
    .await;
    assert!(
        body.contains("account-1") && body.contains("account-2"),
        "{body}"
    );
    let body = visit(&client, &base, "/stream/account-1", &shot("stream"), &dir).await;
    assert!(body.contains("com.acme.bank.Withdrawn"), "{body}");
    let body = visit(
        &client,
        &base,
        &format!("/event/{}", seeded.account_event),
        &shot("event"),
        &dir,
    )
    .await;
    assert!(
        body.contains("specversion") && body.contains("subject"),
        "{body}"
    );
    assert!(text_of(&client, "#payload").await.contains("\"ada\""));

    // The live view shows what is appended after it loaded.
    let body = visit(&client, &base, "/live", &shot("live"), &dir).await;
    assert!(body.contains("order-1"), "{body}");
    let late = orchestrix::StreamId::parse("order-77").unwrap();
    store
        .append(
            &late,
            orchestrix::ExpectedRevision::NoStream,
            vec![orchestrix::EventRecord::json(
                "com.acme.shop.Placed",
                1,
                &serde_json::json!({"total": 77}),
            )],
        )
        .await
        .unwrap();
    until("the live view to show order-77", || async {
        text_of(&client, "#live").await.contains("order-77")
    })
    .await;
    std::fs::write(
        dir.join(format!("{}.png", shot("live"))),
        client.screenshot().await.unwrap(),
    )
    .unwrap();

    let body = visit(&client, &base, "/projections", &shot("projections"), &dir).await;
    assert!(
        body.contains("bank-balances") && body.contains("mailer"),
        "{body}"
    );
    assert!(
        client
            .find(Locator::Css(
                "button[data-post$='/projections/bank-balances/rebuild']"
            ))
            .await
            .is_ok()
    );

    // The CLI's console has no running runtime: the Consumers page shows the
    // store checkpoints of the application's consumers and says so.
    let body = visit(&client, &base, "/consumers", &shot("consumers"), &dir).await;
    assert!(
        body.contains("bank-balances") && body.contains("Store checkpoints only"),
        "{body}"
    );

    let body = visit(&client, &base, "/sagas", &shot("sagas"), &dir).await;
    assert!(
        body.contains("t1") && body.contains("compensated"),
        "{body}"
    );
    let body = visit(&client, &base, "/sagas/transfer/t1", &shot("saga"), &dir).await;
    assert!(
        body.contains("expire") && body.contains("orchestrix.saga.CommandSent"),
        "{body}"
    );
    assert_eq!(text_of(&client, "#saga-status").await, "running");

    let body = visit(&client, &base, "/schemas", &shot("schemas"), &dir).await;
    assert!(body.contains("No schema registry"), "{body}");
    let body = visit(&client, &base, "/catalog", &shot("catalog"), &dir).await;
    assert!(
        body.contains("flowchart LR") && body.contains("saga transfer"),
        "{body}"
    );

    let body = visit(
        &client,
        &base,
        &format!("/dlq/{mailer_letter}"),
        &shot("dead-letter"),
        &dir,
    )
    .await;
    assert!(body.contains("no address"), "{body}");

    // Replay with the token, from the list.
    let body = visit(&client, &base, "/dlq", &shot("dead-letters"), &dir).await;
    assert!(body.contains(&mailer_letter.to_string()), "{body}");
    client
        .find(Locator::Css("#token"))
        .await
        .unwrap()
        .send_keys(TOKEN)
        .await
        .unwrap();
    let button = format!("button[data-post='{replay}']");
    client
        .find(Locator::Css(&button))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until("the replayed letter to leave the list", || async {
        let gone = client
            .find_all(Locator::Css(&button))
            .await
            .unwrap()
            .is_empty();
        let listed = client.find(Locator::Css("#dead-letters")).await.is_ok();
        gone && listed
    })
    .await;
    assert!(text_of(&client, "#flash").await.contains("replayed"));
    std::fs::write(
        dir.join(format!("{}.png", shot("dead-letters-after-replay"))),
        client.screenshot().await.unwrap(),
    )
    .unwrap();
    let letters = store
        .backend()
        .dead_letters
        .list_dead_letters(None, 100)
        .await
        .unwrap();
    assert_eq!(letters.len(), 2);
    assert!(letters.iter().all(|l| l.id != mailer_letter));
    let seen = mailer.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen.values().copied().collect::<Vec<_>>(), [1]);

    let log = browser_log(&driver, &client).await;
    let errors: Vec<_> = log
        .iter()
        .filter(|e| e["level"] == "SEVERE" || e["level"] == "WARNING")
        .collect();
    assert!(errors.is_empty(), "browser console: {errors:#?}");

    client.close().await.unwrap();
    server.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn console_in_chromium_sqlite() {
    if !browser_available() {
        return;
    }
    let store = support::sqlite();
    console_in_chromium(&store.url, "sqlite").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn console_in_chromium_postgres() {
    if !browser_available() {
        return;
    }
    let Some(store) = support::postgres() else {
        return;
    };
    console_in_chromium(&store.url, "postgres").await;
}
