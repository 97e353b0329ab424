//! The web console: streams, the live all-stream, projections with lag and
//! rebuild, consumers with their partitions, owners and lag, dead letters
//! with replay, sagas with their timeline, schema
//! subjects and the event catalog, over [`Operations`].
//!
//! **Server-rendered HTML, no front-end build, no CDN.** Every page is a
//! `format!` of escaped values (see `html.rs`) with about 2 KB of inline CSS
//! and JavaScript compiled into the binary. An operator's console must work
//! where the workers run — air-gapped clusters, a laptop without network —
//! and must not pull code from a third party into a page that holds an
//! action token; a bundled single-page application would need a JavaScript
//! tool chain in the build for a handful of tables. The script only does
//! three things: keeps the token in the tab's session storage, sends the
//! action buttons' POSTs with it, and polls `api/events` for the live view.
//!
//! **Read-only by default.** `POST` actions (rebuild a projection, replay a
//! dead letter) need `Authorization: Bearer TOKEN` with the token given to
//! [`Console::token`]; without a configured token every action answers 403.
//!
//! Served by a worker next to `/healthz` (its `routes` hook) under `/console`,
//! or alone by `orchestrix console` at `/`:
//!
//! ```no_run
//! # async fn demo(app: orchestrix::Application) {
//! use orchestrix_ops::{Operations, console::Console};
//! let console = Console::new(Operations::application(app))
//!     .base("/console")
//!     .token(std::env::var("ORCHESTRIX_CONSOLE_TOKEN").ok());
//! let routes: axum::Router = console.router();
//! // orchestrix_worker::Worker::new(app).routes(routes) ...
//! # }
//! ```

mod html;
mod pages;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};

use crate::operate::Operations;

/// One subject of a schema registry with its versions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SubjectView {
    /// The subject.
    pub subject: String,
    /// Its versions, oldest first.
    pub versions: Vec<SchemaVersionView>,
}

/// One registered schema version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchemaVersionView {
    /// The version within the subject.
    pub version: u32,
    /// The global schema id.
    pub id: u32,
    /// The schema text.
    pub schema: String,
}

/// Lists a schema registry's subjects and versions for the Schemas page
/// (the console does not depend on a registry client; the CLI passes one).
pub type SchemaSource = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<SubjectView>, String>> + Send>>
        + Send
        + Sync,
>;

/// One partition of one consumer, for the Consumers page.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ConsumerView {
    /// The consumer (handler) name.
    pub consumer: String,
    /// Its consumer group on a bus; empty in the embedded runtime.
    pub group: String,
    /// The partition; `None` for a consumer that reads the store as one.
    pub partition: Option<u32>,
    /// Who owns it now: a member id, `None` for another member or nobody.
    pub owner: Option<String>,
    /// The last position handled (store consumers), when known.
    pub position: Option<u64>,
    /// Messages not handled yet.
    pub lag_events: u64,
    /// Age of the oldest of them, in seconds, when known.
    pub lag_seconds: Option<f64>,
}

/// Lists the consumers of a running application, partition by partition,
/// for the Consumers page (the console does not depend on the runtime that
/// knows them; the worker passes one).
pub type ConsumerSource = Arc<
    dyn Fn() -> Pin<Box<dyn Future<Output = Result<Vec<ConsumerView>, String>> + Send>>
        + Send
        + Sync,
>;

/// The console's configuration and state.
#[derive(Clone)]
pub struct Console {
    ops: Operations,
    base: String,
    token: Option<String>,
    schemas: Option<SchemaSource>,
    consumers: Option<ConsumerSource>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("ops", &self.ops)
            .field("base", &self.base)
            .field("actions", &self.token.is_some())
            .field("schemas", &self.schemas.is_some())
            .field("consumers", &self.consumers.is_some())
            .finish()
    }
}

impl Console {
    /// A read-only console at `/` over `ops` (rebuild and replay need
    /// [`Operations::application`]).
    #[must_use]
    pub fn new(ops: Operations) -> Self {
        Self {
            ops,
            base: String::new(),
            token: None,
            schemas: None,
            consumers: None,
        }
    }

    /// Serves under this path prefix (`/console`); `/` or empty: the root.
    #[must_use]
    pub fn base(mut self, base: &str) -> Self {
        self.base = base.trim_end_matches('/').to_owned();
        self
    }

    /// The bearer token that enables the actions; `None` (or empty) keeps
    /// the console read-only.
    #[must_use]
    pub fn token(mut self, token: Option<String>) -> Self {
        self.token = token.filter(|t| !t.is_empty());
        self
    }

    /// Where the Schemas page lists subjects and versions from.
    #[must_use]
    pub fn schemas(mut self, source: SchemaSource) -> Self {
        self.schemas = Some(source);
        self
    }

    /// Where the Consumers page lists partitions, owners and lag from (a
    /// running worker's runtime); without one it shows the store
    /// checkpoints of the application's consumers.
    #[must_use]
    pub fn consumers(mut self, source: ConsumerSource) -> Self {
        self.consumers = Some(source);
        self
    }

    /// Whether `header` (an `Authorization` value) carries the token.
    fn authorized(&self, header: Option<&str>) -> bool {
        let (Some(token), Some(header)) = (&self.token, header) else {
            return false;
        };
        let Some(given) = header.strip_prefix("Bearer ") else {
            return false;
        };
        // Constant time in the token's length.
        given.len() == token.len()
            && given
                .bytes()
                .zip(token.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }

    /// The routes, every path under the [`base`](Self::base).
    pub fn router(self) -> Router {
        let b = self.base.clone();
        let root = if b.is_empty() {
            "/".to_owned()
        } else {
            b.clone()
        };
        let state = Arc::new(self);
        let mut router = Router::new()
            .route(&root, get(pages::overview))
            .route(&format!("{b}/streams"), get(pages::streams))
            .route(&format!("{b}/stream/{{stream}}"), get(pages::stream))
            .route(&format!("{b}/event/{{id}}"), get(pages::event))
            .route(&format!("{b}/live"), get(pages::live))
            .route(&format!("{b}/api/events"), get(pages::api_events))
            .route(&format!("{b}/projections"), get(pages::projections))
            .route(
                &format!("{b}/projections/{{name}}/rebuild"),
                post(pages::rebuild),
            )
            .route(&format!("{b}/consumers"), get(pages::consumers))
            .route(&format!("{b}/api/consumers"), get(pages::api_consumers))
            .route(&format!("{b}/dlq"), get(pages::dead_letters))
            .route(&format!("{b}/dlq/{{id}}"), get(pages::dead_letter))
            .route(&format!("{b}/dlq/{{id}}/replay"), post(pages::replay))
            .route(&format!("{b}/sagas"), get(pages::sagas))
            .route(
                &format!("{b}/sagas/{{saga}}/{{correlation}}"),
                get(pages::saga),
            )
            .route(&format!("{b}/schemas"), get(pages::schemas))
            .route(&format!("{b}/catalog"), get(pages::catalog));
        if !b.is_empty() {
            router = router.route(&format!("{b}/"), get(pages::overview));
        }
        router.with_state(state)
    }
}
