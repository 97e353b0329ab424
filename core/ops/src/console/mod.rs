//! The web console: streams, the live all-stream, projections with lag and
//! rebuild, dead letters with replay, sagas with their timeline, schema
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

/// The console's configuration and state.
#[derive(Clone)]
pub struct Console {
    ops: Operations,
    base: String,
    token: Option<String>,
    schemas: Option<SchemaSource>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("ops", &self.ops)
            .field("base", &self.base)
            .field("actions", &self.token.is_some())
            .field("schemas", &self.schemas.is_some())
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
