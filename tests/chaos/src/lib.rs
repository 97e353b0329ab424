#![doc = include_str!("../README.md")]

pub mod decoders;
pub mod disk;
pub mod fenced;
pub mod member;
pub mod net;
pub mod services;
pub mod workload;

use std::future::Future;
use std::time::Duration;

/// Whether the longer local variant was asked for (`ORCHESTRIX_CHAOS_LONG=1`).
#[must_use]
pub fn long_run() -> bool {
    std::env::var("ORCHESTRIX_CHAOS_LONG").is_ok_and(|v| v == "1" || v == "true")
}

/// Picks the CI figure or the long one.
#[must_use]
pub fn scale(ci: u64, long: u64) -> u64 {
    if long_run() { long } else { ci }
}

/// A service this case needs is missing: skip (outside CI) with the reason,
/// or fail (`CI=true`). Returns `true` when the case must be skipped.
///
/// # Panics
/// Under `CI=true`, always (a missing service fails the suite).
#[must_use]
pub fn missing(case: &str, reason: &str) -> bool {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{case}: {reason}"
    );
    eprintln!("skipping {case}: {reason}");
    true
}

/// A free TCP port on loopback (bound, then released).
///
/// # Errors
/// When no port can be bound.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Polls `check` every `every` until it returns `Some`, or fails after
/// `limit` naming `what`.
///
/// # Errors
/// When `limit` passes first.
pub async fn poll<T, F, Fut>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(value) = check().await {
            return Ok(value);
        }
        if tokio::time::Instant::now() >= deadline {
            anyhow::bail!("{what}: not reached within {limit:?}");
        }
        tokio::time::sleep(every).await;
    }
}

/// Waits until a server started by a test has written `started` to its log
/// at `log` and accepts connections on `127.0.0.1:port`.
///
/// # Errors
/// When `limit` passes first.
pub async fn wait_started(
    what: &str,
    log: &std::path::Path,
    started: &str,
    port: u16,
    limit: Duration,
) -> anyhow::Result<()> {
    wait_started_on(what, log, started, "127.0.0.1", port, limit).await
}

/// As [`wait_started`], the server listening on `host`.
///
/// # Errors
/// When `limit` passes first.
pub async fn wait_started_on(
    what: &str,
    log: &std::path::Path,
    started: &str,
    host: &str,
    port: u16,
    limit: Duration,
) -> anyhow::Result<()> {
    poll(what, limit, Duration::from_millis(100), || async move {
        let logged = std::fs::read_to_string(log).is_ok_and(|l| l.contains(started));
        let open = tokio::net::TcpStream::connect((host, port)).await.is_ok();
        (logged && open).then_some(())
    })
    .await
}

/// `GET path` on `127.0.0.1:port`: status code and body.
pub async fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let connect = tokio::net::TcpStream::connect(("127.0.0.1", port));
    let mut conn = tokio::time::timeout(Duration::from_secs(5), connect)
        .await
        .ok()?
        .ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    tokio::time::timeout(Duration::from_secs(10), conn.read_to_string(&mut response))
        .await
        .ok()?
        .ok()?;
    let status = response.split(' ').nth(1)?.parse().ok()?;
    let body = response.split_once("\r\n\r\n")?.1.to_owned();
    Some((status, body))
}
