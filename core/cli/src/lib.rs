#![doc = include_str!("../README.md")]

mod catalog;
mod commands;
mod console;
mod output;
mod schema;

use std::future::Future;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::pin::Pin;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use orchestrix::Store;
use orchestrix_ops::Operations;

pub use catalog::{CatalogArgs, CatalogFormat};
pub use commands::{
    DlqCommand, EventsCommand, ProjectionsCommand, RegistryCommand, SagasCommand, StreamsCommand,
};
pub use console::ConsoleArgs;
pub use output::Out;

/// Exit code: success.
pub const EXIT_OK: u8 = 0;
/// Exit code: the command ran and failed (a store error, a handler failing
/// again on replay, an incompatible schema).
pub const EXIT_FAILED: u8 = 1;
/// Exit code: the command line or its input is wrong (clap's own errors
/// use 2 as well).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: what was asked for does not exist (a stream, event, dead
/// letter, saga instance or projection).
pub const EXIT_NOT_FOUND: u8 = 3;

/// Orchestrix operations: streams, events, projections, dead letters, sagas,
/// schemas and the web console.
#[derive(Debug, Parser)]
#[command(name = "orchestrix", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The event store: sqlite://PATH, postgres://user@host/db?schema=S, memory://.
    #[arg(long, global = true, env = "ORCHESTRIX_STORE_URL")]
    pub store: Option<String>,
    /// The bus, for its dead letters (`dlq` commands): nats://...?stream=S,
    /// kafka://...?prefix=P, named as the workers name them (not used by
    /// other commands).
    #[arg(long, global = true, env = "ORCHESTRIX_BUS_URL")]
    pub bus: Option<String>,
    /// A worker configuration file (TOML); its `[store] url` and `[bus] url`
    /// apply unless --store/--bus or the environment set them.
    #[arg(long, global = true, env = "ORCHESTRIX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Machine-readable output (JSON) instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Browse streams.
    #[command(subcommand)]
    Streams(StreamsCommand),
    /// The all-stream: tail it, show one event.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Projections' checkpoints and lag; rebuilds.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Dead letters: list, show, replay, delete.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Saga instances.
    #[command(subcommand)]
    Sagas(SagasCommand),
    /// Check, register and list Avro event schemas in a schema registry.
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
    /// Run an embedded schema registry.
    #[command(subcommand)]
    Registry(RegistryCommand),
    /// The application's event catalog: commands, events with schema
    /// versions, aggregates, projections and sagas, as Markdown with a
    /// Mermaid flow diagram (needs the application's own binary).
    Catalog(CatalogArgs),
    /// The web console: streams, live all-stream, projections, dead letters,
    /// sagas, schemas (read-only unless --token).
    Console(ConsoleArgs),
}

/// A command's failure, with its exit code.
#[derive(Debug)]
pub struct Failure {
    /// The exit code.
    pub code: u8,
    /// What to print on standard error.
    pub error: anyhow::Error,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Self {
        let error = e.into();
        let code = classify(&error);
        Self { code, error }
    }
}

fn classify(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<orchestrix_ops::Error>() {
            if e.is_not_found() {
                return EXIT_NOT_FOUND;
            }
            if e.is_invalid_input() || matches!(e, orchestrix_ops::Error::NeedsApplication(_)) {
                return EXIT_USAGE;
            }
        }
        if let Some(e) = cause.downcast_ref::<orchestrix::Error>() {
            match e {
                orchestrix::Error::NotFound { .. } => return EXIT_NOT_FOUND,
                orchestrix::Error::InvalidInput { .. }
                | orchestrix::Error::FeatureNotEnabled { .. } => return EXIT_USAGE,
                _ => {}
            }
        }
        if cause.downcast_ref::<Usage>().is_some() {
            return EXIT_USAGE;
        }
    }
    EXIT_FAILED
}

/// A usage error found after parsing (a missing --store, a bad filter).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Usage(pub String);

/// Builds the [`Operations`] for a store: the generic command uses
/// [`Operations::new`]; an application's own binary passes its
/// application, so that `dlq replay` and `projections rebuild` run its
/// handlers and projections.
pub type Connect = Box<
    dyn Fn(Store) -> Pin<Box<dyn Future<Output = anyhow::Result<Operations>> + Send>> + Send + Sync,
>;

/// How commands reach the store and the application.
pub struct Context {
    connect: Connect,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Default for Context {
    fn default() -> Self {
        Self::generic()
    }
}

impl Context {
    /// The generic command: the store alone.
    #[must_use]
    pub fn generic() -> Self {
        Self {
            connect: Box::new(|store| Box::pin(async move { Ok(Operations::new(store)) })),
        }
    }

    /// An application's command: `connect` builds its [`Operations`] (with
    /// [`Operations::application`]) on the store the command line names.
    #[must_use]
    pub fn with(connect: Connect) -> Self {
        Self { connect }
    }
}

/// The store and bus URLs after flags, environment and config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Urls {
    /// The store URL.
    pub store: Option<String>,
    /// The bus URL.
    pub bus: Option<String>,
}

#[derive(Debug, Default, serde::Deserialize)]
struct FileSection {
    #[serde(default)]
    url: String,
}

#[derive(Debug, Default, serde::Deserialize)]
struct FileConfig {
    #[serde(default)]
    store: FileSection,
    #[serde(default)]
    bus: FileSection,
}

impl Global {
    /// The URLs: flag or environment first, then the config file.
    ///
    /// # Errors
    /// An unreadable or malformed config file.
    pub fn urls(&self) -> anyhow::Result<Urls> {
        let mut urls = Urls {
            store: self.store.clone().filter(|s| !s.is_empty()),
            bus: self.bus.clone().filter(|s| !s.is_empty()),
        };
        if let Some(path) = &self.config {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Usage(format!("cannot read {}: {e}", path.display())))?;
            let file: FileConfig =
                toml::from_str(&text).map_err(|e| Usage(format!("{}: {e}", path.display())))?;
            if urls.store.is_none() && !file.store.url.is_empty() {
                urls.store = Some(file.store.url);
            }
            if urls.bus.is_none() && !file.bus.url.is_empty() {
                urls.bus = Some(file.bus.url);
            }
        }
        Ok(urls)
    }
}

/// Runs a parsed command line, writing to `out`.
///
/// # Errors
/// A [`Failure`] with its exit code.
pub async fn run(cli: Cli, context: &Context, out: &mut Out<'_>) -> Result<(), Failure> {
    let urls = cli.global.urls()?;
    let ops = || async {
        let url = urls.store.clone().ok_or_else(|| {
            Usage("no store: give --store URL, ORCHESTRIX_STORE_URL or --config FILE".into())
        })?;
        let store = orchestrix_backends::open_store(&url).await?;
        (context.connect)(store).await
    };
    match cli.command {
        Command::Streams(cmd) => commands::streams(cmd, &ops().await?, out).await,
        Command::Events(cmd) => commands::events(cmd, &ops().await?, out).await,
        Command::Projections(cmd) => commands::projections(cmd, &ops().await?, out).await,
        Command::Dlq(cmd) => {
            let ops = match &urls.bus {
                // A bus's dead letters: the store is optional (the
                // application's handlers may want it on replay).
                Some(bus) => {
                    let store = match &urls.store {
                        Some(url) => orchestrix_backends::open_store(url).await?,
                        None => Store::memory(),
                    };
                    let ops = (context.connect)(store).await?;
                    let queue = orchestrix_backends::dead_letters(bus, ops.app()).await?;
                    ops.with_dead_letters(queue)
                }
                None => ops().await?,
            };
            commands::dlq(cmd, &ops, &urls, out).await
        }
        Command::Sagas(cmd) => commands::sagas(cmd, &ops().await?, out).await,
        Command::Registry(cmd) => commands::registry(cmd, out).await,
        Command::Catalog(args) => {
            // The catalog needs the registrations, not the data: any store
            // will do, an in-memory one when none is given.
            let store = match &urls.store {
                Some(url) => orchestrix_backends::open_store(url).await?,
                None => Store::memory(),
            };
            let ops = (context.connect)(store).await?;
            catalog::run(&args, &ops, out)
        }
        Command::Console(args) => {
            // With a bus, the Dead letters page lists and replays the bus's.
            let mut ops = ops().await?;
            if let Some(bus) = &urls.bus {
                let queue = orchestrix_backends::dead_letters(bus, ops.app()).await?;
                ops = ops.with_dead_letters(queue);
            }
            console::run(args, ops, out).await
        }
        Command::Schema(cmd) => match schema::run(cmd).await {
            Ok(code) if code == ExitCode::SUCCESS => Ok(()),
            Ok(_) => Err(Failure {
                code: EXIT_FAILED,
                error: anyhow::anyhow!("some schemas failed"),
            }),
            Err(e) => Err(Failure {
                code: EXIT_USAGE,
                error: e,
            }),
        },
    }
}

/// Parses the process's arguments, runs, prints errors and returns the exit
/// code: what `main` of the `orchestrix` binary (or of an application's own
/// operations binary, with its [`Context`]) does.
pub async fn main_with(context: Context) -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let tty = stdout.is_terminal();
    let mut lock = stdout.lock();
    let json = cli.global.json;
    let mut out = Out {
        w: &mut lock,
        json,
        tty,
    };
    let result = run(cli, &context, &mut out).await;
    let _ = out.w.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader went away (`orchestrix ... | head`): stop quietly, as
        // Unix tools do.
        Err(f) if is_broken_pipe(&f.error) => ExitCode::SUCCESS,
        Err(f) => {
            // "some schemas failed" was already reported line by line.
            if !(f.code == EXIT_FAILED && f.error.to_string() == "some schemas failed") {
                eprintln!("error: {:#}", f.error);
            }
            ExitCode::from(f.code)
        }
    }
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
