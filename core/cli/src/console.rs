//! `orchestrix console`: the web console on its own port.

use std::net::SocketAddr;
use std::sync::Arc;

use clap::Args;
use orchestrix_ops::Operations;
use orchestrix_ops::console::{Console, SchemaSource, SchemaVersionView, SubjectView};
use orchestrix_schema_registry::{RegistryClient, SchemaRegistry, VersionSpec};

use crate::{Failure, Out, Usage};

/// Options of `orchestrix console`.
#[derive(Debug, Args)]
pub struct ConsoleArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1:8090")]
    pub listen: SocketAddr,
    /// The bearer token that enables the actions (rebuild, replay); without
    /// one the console is read-only.
    #[arg(long, env = "ORCHESTRIX_CONSOLE_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A Confluent-compatible schema registry to list subjects and versions from.
    #[arg(long, env = "ORCHESTRIX_SCHEMA_REGISTRY_URL")]
    pub registry: Option<String>,
    /// Serve under this path prefix (e.g. /console) instead of /.
    #[arg(long, default_value = "")]
    pub base: String,
}

/// Subjects and versions from a registry client.
fn schema_source(client: Arc<RegistryClient>) -> SchemaSource {
    Arc::new(move || {
        let client = client.clone();
        Box::pin(async move {
            let mut out = Vec::new();
            for subject in client.subjects().await.map_err(|e| e.to_string())? {
                let mut versions = Vec::new();
                for v in client.versions(&subject).await.map_err(|e| e.to_string())? {
                    let sv = client
                        .version(&subject, VersionSpec::Number(v))
                        .await
                        .map_err(|e| e.to_string())?;
                    versions.push(SchemaVersionView {
                        version: sv.version,
                        id: sv.id,
                        schema: sv.schema,
                    });
                }
                out.push(SubjectView { subject, versions });
            }
            Ok(out)
        })
    })
}

/// Serves the console until Ctrl-C.
pub(crate) async fn run(
    args: ConsoleArgs,
    ops: Operations,
    out: &mut Out<'_>,
) -> Result<(), Failure> {
    let mut console = Console::new(ops).base(&args.base).token(args.token.clone());
    if let Some(url) = &args.registry {
        let client =
            RegistryClient::new(url).map_err(|e| Usage(format!("schema registry `{url}`: {e}")))?;
        console = console.schemas(schema_source(Arc::new(client)));
    }
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let url = format!("http://{addr}{}/", args.base.trim_end_matches('/'));
    let mode = if args.token.as_deref().is_some_and(|t| !t.is_empty()) {
        "actions enabled with the token"
    } else {
        "read-only"
    };
    if out.json {
        out.json_line(&serde_json::json!({ "listening": url, "mode": mode }))?;
    } else {
        out.line(format!("console listening on {url} ({mode})"))?;
    }
    out.w.flush()?;
    axum::serve(listener, console.router())
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
