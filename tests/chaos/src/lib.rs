#![doc = include_str!("../README.md")]

pub mod decoders;
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
