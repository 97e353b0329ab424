//! [`RegistryClient`]: a client of the Confluent Schema Registry REST API.

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::{Method, Request, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use orchestrix_avro::compat::CompatibilityLevel;
use serde::de::DeserializeOwned;
use serde_json::json;
use url::Url;

use crate::api::SchemaRegistry;
use crate::error::{RegistryError, Result};
use crate::types::{
    CONTENT_TYPE, CompatibilityResult, ErrorBody, IdResponse, SchemaRequest, SchemaResponse,
    SubjectVersion, VersionSpec,
};

/// A client of a Confluent-compatible schema registry (Confluent Schema
/// Registry, Redpanda, Karapace, Apicurio's compatibility API, or this crate's
/// [`crate::server`]).
///
/// HTTP/1.1 over `hyper` (which the embedded server's `axum` already brings,
/// so the client adds no dependency). Plain `http://` only in this build: an
/// `https://` URL is refused with a configuration error; put a TLS-terminating
/// proxy in front, or add TLS (see the crate README).
///
/// ```no_run
/// use orchestrix_schema_registry::{RegistryClient, SchemaRegistry};
/// # async fn f() -> Result<(), orchestrix_schema_registry::RegistryError> {
/// let client = RegistryClient::new("http://localhost:8081")?;
/// let id = client.register("com.acme.Pinged", r#"{"type":"record","name":"Pinged","namespace":"com.acme","fields":[]}"#).await?;
/// println!("{}", client.schema_by_id(id).await?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RegistryClient {
    base: Url,
    http: Client<HttpConnector, Full<Bytes>>,
    auth: Option<String>,
    timeout: Duration,
}

impl RegistryClient {
    /// A client of the registry at `base_url` (`http://host:port[/prefix]`).
    ///
    /// # Errors
    /// [`RegistryError::Config`] for a URL that is not `http://`.
    pub fn new(base_url: &str) -> Result<Self> {
        let mut base = Url::parse(base_url)
            .map_err(|e| RegistryError::Config(format!("`{base_url}`: {e}")))?;
        match base.scheme() {
            "http" => {}
            "https" => {
                return Err(RegistryError::Config(format!(
                    "`{base_url}`: https is not compiled into this client; use http:// or a TLS-terminating proxy"
                )));
            }
            other => {
                return Err(RegistryError::Config(format!(
                    "`{base_url}`: unsupported scheme `{other}`"
                )));
            }
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let auth = (!base.username().is_empty()).then(|| {
            let credentials = format!("{}:{}", base.username(), base.password().unwrap_or(""));
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(credentials)
            )
        });
        let _ = base.set_username("");
        let _ = base.set_password(None);
        let http = Client::builder(TokioExecutor::new()).build_http();
        Ok(Self {
            base,
            http,
            auth,
            timeout: Duration::from_secs(30),
        })
    }

    /// Sends HTTP basic authentication (Confluent Cloud API key and secret).
    #[must_use]
    pub fn with_basic_auth(mut self, user: &str, password: &str) -> Self {
        let credentials = format!("{user}:{password}");
        self.auth = Some(format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(credentials)
        ));
        self
    }

    /// Sets the timeout of each request (30 s by default).
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The base URL.
    #[must_use]
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, segments: &[&str], query: Option<&str>) -> Result<Url> {
        let mut url = self.base.clone();
        {
            let mut path = url
                .path_segments_mut()
                .map_err(|()| RegistryError::Config("base URL cannot have a path".into()))?;
            path.pop_if_empty();
            path.extend(segments);
        }
        url.set_query(query);
        Ok(url)
    }

    /// Sends a request; returns the status and body.
    async fn send(
        &self,
        method: Method,
        url: &Url,
        body: Option<serde_json::Value>,
    ) -> Result<(u16, Bytes)> {
        let transport = |e: Box<dyn std::error::Error + Send + Sync>| RegistryError::Transport {
            url: url.to_string(),
            source: e,
        };
        let mut req = Request::builder()
            .method(method)
            .uri(url.as_str())
            .header(header::ACCEPT, CONTENT_TYPE);
        if let Some(auth) = &self.auth {
            req = req.header(header::AUTHORIZATION, auth);
        }
        let body = match body {
            Some(v) => {
                req = req.header(header::CONTENT_TYPE, CONTENT_TYPE);
                Full::new(Bytes::from(
                    serde_json::to_vec(&v).map_err(|e| transport(e.into()))?,
                ))
            }
            None => Full::new(Bytes::new()),
        };
        let req = req.body(body).map_err(|e| transport(e.into()))?;
        let exchange = async {
            let resp = self
                .http
                .request(req)
                .await
                .map_err(|e| transport(e.into()))?;
            let status = resp.status().as_u16();
            let bytes = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| transport(e.into()))?
                .to_bytes();
            Ok((status, bytes))
        };
        tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| transport(format!("no answer within {:?}", self.timeout).into()))?
    }

    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        query: Option<&str>,
        body: Option<serde_json::Value>,
        context: (Option<&str>, Option<&str>),
    ) -> Result<T> {
        let url = self.url(segments, query)?;
        let (status, bytes) = self.send(method, &url, body).await?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| RegistryError::Transport {
                url: url.to_string(),
                source: e.into(),
            });
        }
        let (error_code, message) = match serde_json::from_slice::<ErrorBody>(&bytes) {
            Ok(b) => (b.error_code, b.message),
            Err(_) => (
                u32::from(status),
                String::from_utf8_lossy(&bytes).into_owned(),
            ),
        };
        let (subject, version) = context;
        let mut err = RegistryError::from_response(status, error_code, message, subject, version);
        if let RegistryError::Incompatible { details, .. } = &mut err {
            *details = split_details(details.first().map(String::as_str).unwrap_or_default());
        }
        Err(err)
    }
}

/// Pulls the list out of Confluent's "..., details: [a, b]" message.
fn split_details(message: &str) -> Vec<String> {
    match message.split_once("details: [") {
        Some((_, rest)) => {
            let inner = rest.strip_suffix(']').unwrap_or(rest);
            vec![inner.to_owned()]
        }
        None => vec![message.to_owned()],
    }
}

fn schema_body(schema: &str) -> serde_json::Value {
    serde_json::to_value(SchemaRequest {
        schema: schema.to_owned(),
        schema_type: None,
        references: Vec::new(),
    })
    .unwrap_or_default()
}

#[async_trait]
impl SchemaRegistry for RegistryClient {
    async fn register(&self, subject: &str, schema: &str) -> Result<u32> {
        let r: IdResponse = self
            .call(
                Method::POST,
                &["subjects", subject, "versions"],
                None,
                Some(schema_body(schema)),
                (Some(subject), None),
            )
            .await?;
        Ok(r.id)
    }

    async fn lookup(&self, subject: &str, schema: &str) -> Result<SubjectVersion> {
        self.call(
            Method::POST,
            &["subjects", subject],
            None,
            Some(schema_body(schema)),
            (Some(subject), None),
        )
        .await
    }

    async fn schema_by_id(&self, id: u32) -> Result<String> {
        let r: SchemaResponse = self
            .call(
                Method::GET,
                &["schemas", "ids", &id.to_string()],
                None,
                None,
                (None, None),
            )
            .await?;
        Ok(r.schema)
    }

    async fn subjects(&self) -> Result<Vec<String>> {
        self.call(Method::GET, &["subjects"], None, None, (None, None))
            .await
    }

    async fn versions(&self, subject: &str) -> Result<Vec<u32>> {
        self.call(
            Method::GET,
            &["subjects", subject, "versions"],
            None,
            None,
            (Some(subject), None),
        )
        .await
    }

    async fn version(&self, subject: &str, version: VersionSpec) -> Result<SubjectVersion> {
        let v = version.to_string();
        self.call(
            Method::GET,
            &["subjects", subject, "versions", &v],
            None,
            None,
            (Some(subject), Some(&v)),
        )
        .await
    }

    async fn check_compatibility(
        &self,
        subject: &str,
        version: VersionSpec,
        schema: &str,
    ) -> Result<CompatibilityResult> {
        let v = version.to_string();
        self.call(
            Method::POST,
            &["compatibility", "subjects", subject, "versions", &v],
            Some("verbose=true"),
            Some(schema_body(schema)),
            (Some(subject), Some(&v)),
        )
        .await
    }

    async fn config(
        &self,
        subject: Option<&str>,
        default_to_global: bool,
    ) -> Result<CompatibilityLevel> {
        let r: serde_json::Value = match subject {
            None => {
                self.call(Method::GET, &["config"], None, None, (None, None))
                    .await?
            }
            Some(s) => {
                let q = default_to_global.then_some("defaultToGlobal=true");
                self.call(Method::GET, &["config", s], q, None, (Some(s), None))
                    .await?
            }
        };
        let level = r
            .get("compatibilityLevel")
            .or_else(|| r.get("compatibility"))
            .and_then(|v| v.as_str())
            .unwrap_or_default();
        level
            .parse()
            .map_err(|_| RegistryError::InvalidCompatibilityLevel(level.to_owned()))
    }

    async fn set_config(
        &self,
        subject: Option<&str>,
        level: CompatibilityLevel,
    ) -> Result<CompatibilityLevel> {
        let body = Some(json!({ "compatibility": level.as_str() }));
        let _: serde_json::Value = match subject {
            None => {
                self.call(Method::PUT, &["config"], None, body, (None, None))
                    .await?
            }
            Some(s) => {
                self.call(Method::PUT, &["config", s], None, body, (Some(s), None))
                    .await?
            }
        };
        Ok(level)
    }

    async fn delete_subject(&self, subject: &str) -> Result<Vec<u32>> {
        self.call(
            Method::DELETE,
            &["subjects", subject],
            None,
            None,
            (Some(subject), None),
        )
        .await
    }
}
