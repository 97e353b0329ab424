//! `/healthz`, `/readyz` and `/metrics`.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::worker::Shared;

/// The content type of the Prometheus text exposition format.
pub const PROMETHEUS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(shared)
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Alive: the process answers, and no consumer stopped on its own (a
/// restart is the cure for that).
async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    if !shared.is_draining()
        && let Some(stopped) = shared.monitors().into_iter().find(|m| m.is_stopped())
    {
        return text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("consumer `{}` stopped\n", stopped.name()),
        );
    }
    text(StatusCode::OK, "ok\n".to_owned())
}

/// Ready: started, not stopping, the store answers in time, every consumer
/// running (the embedded runtime's consumers own every partition once
/// started).
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    let mut report = String::new();
    let mut ready = true;
    let mut check = |ok: bool, line: String| {
        ready &= ok;
        let _ = writeln!(report, "[{}] {line}", if ok { "+" } else { "-" });
    };
    check(shared.is_started(), "runtime started".to_owned());
    check(!shared.is_draining(), "not shutting down".to_owned());
    let store = shared.store();
    match tokio::time::timeout(shared.store_timeout, store.head_position()).await {
        Ok(Ok(head)) => check(
            true,
            format!("store `{}` reachable (head {head})", store.backend_name()),
        ),
        Ok(Err(e)) => check(
            false,
            format!("store `{}` unreachable: {e}", store.backend_name()),
        ),
        Err(_) => check(
            false,
            format!(
                "store `{}` did not answer within {:?}",
                store.backend_name(),
                shared.store_timeout
            ),
        ),
    }
    for m in shared.monitors() {
        check(!m.is_stopped(), format!("consumer `{}` running", m.name()));
    }
    // On a bus, the groups share the partitions among their workers: a
    // worker with none (more workers than partitions) is a standby, still
    // ready.
    if let Some(bus) = shared.bus() {
        if let Some(connected) = bus.connected() {
            let state = if connected {
                "connected"
            } else {
                "disconnected: no consumer can fetch"
            };
            check(connected, format!("{} {state}", bus.bus()));
        }
        for a in bus.assignments() {
            let partitions = if a.partitions.is_empty() {
                "none yet (standby)".to_owned()
            } else {
                format!("{:?}", a.partitions)
            };
            check(
                true,
                format!(
                    "{} group `{}` (handler `{}`, worker `{}`): partitions {partitions}",
                    bus.bus(),
                    a.group,
                    a.handler,
                    a.worker
                ),
            );
        }
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, report)
}

/// Samples the gauges that need the store, then renders every metric.
async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    shared.sample().await;
    let body = shared.prometheus.render();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE)],
        body,
    )
        .into_response()
}
