//! The Confluent Schema Registry REST API over any [`SchemaRegistry`], with axum.
//!
//! Status codes and error bodies follow Confluent's documentation:
//! `{"error_code": 40401, "message": "Subject 'x' not found."}` with
//! content type `application/vnd.schemaregistry.v1+json`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use orchestrix_avro::compat::CompatibilityLevel;
use serde::Serialize;
use serde_json::json;
use tokio::sync::oneshot;

use crate::api::SchemaRegistry;
use crate::error::RegistryError;
use crate::types::{
    CONTENT_TYPE, ErrorBody, IdResponse, SchemaRequest, SchemaResponse, VersionSpec,
};

type Shared = Arc<dyn SchemaRegistry>;

/// The REST routes over a registry.
pub fn router(registry: Shared) -> Router {
    Router::new()
        .route("/subjects", get(list_subjects))
        .route("/subjects/{subject}", post(lookup).delete(delete_subject))
        .route(
            "/subjects/{subject}/versions",
            get(list_versions).post(register),
        )
        .route("/subjects/{subject}/versions/{version}", get(get_version))
        .route(
            "/subjects/{subject}/versions/{version}/schema",
            get(get_version_schema),
        )
        .route("/schemas/ids/{id}", get(schema_by_id))
        .route("/schemas/ids/{id}/schema", get(raw_schema_by_id))
        .route("/schemas/ids/{id}/versions", get(versions_by_id))
        .route("/schemas/types", get(schema_types))
        .route(
            "/compatibility/subjects/{subject}/versions",
            post(check_all),
        )
        .route(
            "/compatibility/subjects/{subject}/versions/{version}",
            post(check_version),
        )
        .route("/config", get(get_global_config).put(put_global_config))
        .route(
            "/config/{subject}",
            get(get_subject_config).put(put_subject_config),
        )
        .fallback(|| async { error(StatusCode::NOT_FOUND, 404, "HTTP 404 Not Found".into()) })
        .with_state(registry)
}

/// A running server; dropping it does not stop it, [`shutdown`](Self::shutdown) does.
#[derive(Debug)]
pub struct ServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    /// The address it listens on.
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://{addr}`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting, finishes in-flight requests, and waits.
    ///
    /// # Errors
    /// The server's I/O error, if it failed.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        self.task.await.map_err(std::io::Error::other)?
    }
}

/// Serves the registry on `addr` (use port 0 for any free port).
///
/// # Errors
/// When the address cannot be bound.
pub async fn serve(registry: Shared, addr: SocketAddr) -> std::io::Result<ServerHandle> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router(registry);
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    tracing::info!(%addr, "schema registry listening");
    Ok(ServerHandle {
        addr,
        stop: Some(stop),
        task,
    })
}

fn body(status: StatusCode, value: &impl Serialize) -> Response {
    let text = serde_json::to_vec(value).unwrap_or_default();
    (status, [(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

fn error(status: StatusCode, error_code: u32, message: String) -> Response {
    body(
        status,
        &ErrorBody {
            error_code,
            message,
        },
    )
}

fn fail(e: &RegistryError) -> Response {
    if matches!(e, RegistryError::Storage(_)) {
        tracing::error!(error = %e, "schema registry storage failed");
    }
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    error(status, e.error_code(), e.to_string())
}

fn reply<T: Serialize>(result: Result<T, RegistryError>) -> Response {
    match result {
        Ok(v) => body(StatusCode::OK, &v),
        Err(e) => fail(&e),
    }
}

fn query_flag(query: Option<&str>, name: &str) -> bool {
    query.unwrap_or("").split('&').any(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, "true"));
        k == name && v.eq_ignore_ascii_case("true")
    })
}

fn schema_request(bytes: &[u8]) -> Result<String, RegistryError> {
    let req: SchemaRequest = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::BadRequest(format!("Unrecognized request body: {e}")))?;
    if let Some(t) = req.schema_type.as_deref()
        && !t.eq_ignore_ascii_case("AVRO")
    {
        return Err(RegistryError::InvalidSchema(format!(
            "schema type {t} is not supported (only AVRO)"
        )));
    }
    if !req.references.is_empty() {
        return Err(RegistryError::InvalidSchema(
            "schema references are not supported".into(),
        ));
    }
    Ok(req.schema)
}

fn level_request(bytes: &[u8]) -> Result<CompatibilityLevel, RegistryError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::BadRequest(format!("Unrecognized request body: {e}")))?;
    let level = value
        .get("compatibility")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    level
        .parse()
        .map_err(|_| RegistryError::InvalidCompatibilityLevel(level.to_owned()))
}

async fn list_subjects(State(r): State<Shared>) -> Response {
    reply(r.subjects().await)
}

async fn list_versions(State(r): State<Shared>, Path(subject): Path<String>) -> Response {
    reply(r.versions(&subject).await)
}

async fn register(State(r): State<Shared>, Path(subject): Path<String>, bytes: Bytes) -> Response {
    let result = match schema_request(&bytes) {
        Ok(schema) => r
            .register(&subject, &schema)
            .await
            .map(|id| IdResponse { id }),
        Err(e) => Err(e),
    };
    reply(result)
}

async fn lookup(State(r): State<Shared>, Path(subject): Path<String>, bytes: Bytes) -> Response {
    let result = match schema_request(&bytes) {
        Ok(schema) => r.lookup(&subject, &schema).await,
        Err(e) => Err(e),
    };
    reply(result)
}

async fn delete_subject(State(r): State<Shared>, Path(subject): Path<String>) -> Response {
    reply(r.delete_subject(&subject).await)
}

async fn get_version(
    State(r): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    let result = match version.parse::<VersionSpec>() {
        Ok(v) => r.version(&subject, v).await,
        Err(e) => Err(e),
    };
    reply(result)
}

async fn get_version_schema(
    State(r): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
) -> Response {
    let result = match version.parse::<VersionSpec>() {
        Ok(v) => r.version(&subject, v).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(v) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            v.schema,
        )
            .into_response(),
        Err(e) => fail(&e),
    }
}

/// A schema id from the path; one that is not a number is not found (40403).
fn schema_id(id: &str) -> Result<u32, RegistryError> {
    id.parse::<u32>()
        .map_err(|_| RegistryError::SchemaNotFound(format!("Schema {id} not found")))
}

async fn schema_by_id(State(r): State<Shared>, Path(id): Path<String>) -> Response {
    let result = match schema_id(&id) {
        Ok(id) => r.schema_by_id(id).await,
        Err(e) => Err(e),
    };
    reply(result.map(|schema| SchemaResponse {
        schema,
        schema_type: None,
    }))
}

/// `GET /schemas/ids/{id}/schema`: the schema itself as the body.
async fn raw_schema_by_id(State(r): State<Shared>, Path(id): Path<String>) -> Response {
    let result = match schema_id(&id) {
        Ok(id) => r.schema_by_id(id).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(schema) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, CONTENT_TYPE)],
            schema,
        )
            .into_response(),
        Err(e) => fail(&e),
    }
}

/// One subject and version under which a schema id is registered.
#[derive(Serialize)]
struct SubjectVersionRef {
    subject: String,
    version: u32,
}

/// `GET /schemas/ids/{id}/versions`: every subject and version that uses the
/// id, subjects in name order. The port has no index by id, so this walks the
/// subjects; fine for a registry's size (hundreds of subjects, not millions).
async fn versions_by_id(State(r): State<Shared>, Path(id): Path<String>) -> Response {
    let result = async {
        let id = schema_id(&id)?;
        r.schema_by_id(id).await?;
        let mut found = Vec::new();
        for subject in r.subjects().await? {
            for version in r.versions(&subject).await? {
                if r.version(&subject, VersionSpec::Number(version)).await?.id == id {
                    found.push(SubjectVersionRef {
                        subject: subject.clone(),
                        version,
                    });
                }
            }
        }
        Ok::<_, RegistryError>(found)
    }
    .await;
    reply(result)
}

/// `GET /schemas/types`: the schema types this registry accepts.
async fn schema_types() -> Response {
    body(StatusCode::OK, &["AVRO"])
}

async fn check(
    r: &Shared,
    subject: &str,
    version: Result<VersionSpec, RegistryError>,
    query: Option<&str>,
    bytes: &[u8],
) -> Response {
    let result = async {
        let version = version?;
        let schema = schema_request(bytes)?;
        r.check_compatibility(subject, version, &schema).await
    }
    .await;
    match result {
        Ok(mut c) => {
            if !query_flag(query, "verbose") {
                c.messages.clear();
            }
            body(StatusCode::OK, &c)
        }
        Err(e) => fail(&e),
    }
}

async fn check_all(
    State(r): State<Shared>,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Response {
    check(&r, &subject, Ok(VersionSpec::Latest), q.as_deref(), &bytes).await
}

async fn check_version(
    State(r): State<Shared>,
    Path((subject, version)): Path<(String, String)>,
    RawQuery(q): RawQuery,
    bytes: Bytes,
) -> Response {
    check(&r, &subject, version.parse(), q.as_deref(), &bytes).await
}

async fn get_global_config(State(r): State<Shared>) -> Response {
    reply(
        r.config(None, true)
            .await
            .map(|l| json!({ "compatibilityLevel": l.as_str() })),
    )
}

async fn put_global_config(State(r): State<Shared>, bytes: Bytes) -> Response {
    let result = match level_request(&bytes) {
        Ok(level) => r
            .set_config(None, level)
            .await
            .map(|l| json!({ "compatibility": l.as_str() })),
        Err(e) => Err(e),
    };
    reply(result)
}

async fn get_subject_config(
    State(r): State<Shared>,
    Path(subject): Path<String>,
    RawQuery(q): RawQuery,
) -> Response {
    let to_global = query_flag(q.as_deref(), "defaultToGlobal");
    reply(
        r.config(Some(&subject), to_global)
            .await
            .map(|l| json!({ "compatibilityLevel": l.as_str() })),
    )
}

async fn put_subject_config(
    State(r): State<Shared>,
    Path(subject): Path<String>,
    bytes: Bytes,
) -> Response {
    let result = match level_request(&bytes) {
        Ok(level) => r
            .set_config(Some(&subject), level)
            .await
            .map(|l| json!({ "compatibility": l.as_str() })),
        Err(e) => Err(e),
    };
    reply(result)
}
