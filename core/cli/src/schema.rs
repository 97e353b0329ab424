//! `orchestrix schema check | register | list`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// `println!` that returns the write error (a closed pipe, `| head`)
/// instead of panicking.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use orchestrix_avro::ParsedSchema;
use orchestrix_schema_registry::{
    EmbeddedRegistry, RegistryClient, RegistryError, SchemaRegistry, VersionSpec,
};

/// Where the registry is.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RegistryArgs {
    /// URL of a Confluent-compatible schema registry (REST), e.g. http://localhost:8081.
    #[arg(long, env = "ORCHESTRIX_SCHEMA_REGISTRY_URL")]
    registry: Option<String>,
    /// An embedded registry's database, e.g. sqlite://events.db (the event store's file).
    #[arg(long)]
    registry_db: Option<String>,
}

/// Schema subcommands.
#[derive(Debug, Subcommand)]
pub enum SchemaCommand {
    /// Check .avsc files against what is registered; exit 1 if any is incompatible.
    Check(FilesArgs),
    /// Register .avsc files (each refused if incompatible); exit 1 if any is refused.
    Register(FilesArgs),
    /// List subjects and their versions.
    List {
        #[command(flatten)]
        registry: RegistryArgs,
    },
}

/// Files and the registry.
#[derive(Debug, Args)]
pub struct FilesArgs {
    #[command(flatten)]
    registry: RegistryArgs,
    /// Subject for the schema (default: the record's `namespace.name`); only with one file.
    #[arg(long)]
    subject: Option<String>,
    /// .avsc files, or directories whose .avsc files are taken in name order.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

async fn connect(args: &RegistryArgs) -> anyhow::Result<Box<dyn SchemaRegistry>> {
    match (&args.registry, &args.registry_db) {
        (Some(url), _) => Ok(Box::new(RegistryClient::new(url)?)),
        (None, Some(db)) => Ok(Box::new(
            EmbeddedRegistry::open_url(db)
                .await
                .with_context(|| format!("opening {db}"))?,
        )),
        (None, None) => bail!("give --registry URL or --registry-db URL"),
    }
}

/// Orders `{event type}.v{N}.avsc` files by type, then by version as a
/// number (`v10` after `v9`), so that registering a directory walks each
/// type's history in order.
fn version_order(path: &Path) -> (String, u64) {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    name.strip_suffix(".avsc")
        .and_then(|stem| stem.rsplit_once(".v"))
        .and_then(|(t, v)| Some((t.to_owned(), v.parse().ok()?)))
        .unwrap_or((name, 0))
}

/// The .avsc files named, directories expanded (sorted, versions in order).
fn files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("reading {}", path.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|e| e == "avsc"))
                .collect();
            found.sort_by_key(|p| version_order(p));
            out.extend(found);
        } else {
            out.push(path.clone());
        }
    }
    if out.is_empty() {
        bail!(
            "no .avsc file found in {}",
            paths
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(out)
}

struct Loaded {
    path: PathBuf,
    subject: String,
    text: String,
}

fn load(path: &Path, subject: Option<&str>) -> Result<Loaded, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let parsed = ParsedSchema::parse(&text).map_err(|e| e.to_string())?;
    let subject = match subject {
        Some(s) => s.to_owned(),
        None => parsed
            .fullname()
            .map(str::to_owned)
            .ok_or("the schema is not a named type; give --subject (record-name subjects need a record, enum or fixed)")?,
    };
    Ok(Loaded {
        path: path.to_owned(),
        subject,
        text,
    })
}

/// Runs a schema subcommand; returns the exit code (0 ok, 1 incompatible or invalid).
pub async fn run(cmd: SchemaCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SchemaCommand::List { registry } => list(&*connect(&registry).await?).await,
        SchemaCommand::Check(args) => files_command(args, false).await,
        SchemaCommand::Register(args) => files_command(args, true).await,
    }
}

async fn list(registry: &dyn SchemaRegistry) -> anyhow::Result<ExitCode> {
    let subjects = registry.subjects().await?;
    if subjects.is_empty() {
        say!("no subjects");
    }
    for subject in subjects {
        let versions = registry.versions(&subject).await?;
        let latest = registry.version(&subject, VersionSpec::Latest).await?;
        let level = registry.config(Some(&subject), true).await?;
        let versions: Vec<String> = versions.iter().map(ToString::to_string).collect();
        say!(
            "{subject}\tversions {}\tlatest id {}\t{level}",
            versions.join(","),
            latest.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn files_command(args: FilesArgs, register: bool) -> anyhow::Result<ExitCode> {
    let paths = files(&args.paths)?;
    if args.subject.is_some() && paths.len() > 1 {
        bail!("--subject applies to one file, {} given", paths.len());
    }
    let registry = connect(&args.registry).await?;
    let (mut ok, mut failed) = (0, 0);
    for path in &paths {
        let shown = path.display();
        let loaded = match load(path, args.subject.as_deref()) {
            Ok(l) => l,
            Err(reason) => {
                say!("FAIL {shown}: invalid schema: {reason}");
                failed += 1;
                continue;
            }
        };
        let outcome = if register {
            register_one(&*registry, &loaded).await
        } else {
            check_one(&*registry, &loaded).await
        };
        match outcome {
            Ok(line) => {
                say!(
                    "ok   {} ({}): {line}",
                    loaded.subject,
                    loaded.path.display()
                );
                ok += 1;
            }
            Err(Failure::Refused(lines)) => {
                say!(
                    "FAIL {} ({}): incompatible with what is registered:",
                    loaded.subject,
                    loaded.path.display()
                );
                for l in lines {
                    say!("       - {l}");
                }
                failed += 1;
            }
            Err(Failure::Error(e)) => return Err(e),
        }
    }
    let verb = if register { "registered" } else { "checked" };
    say!("{} schema(s) {verb}: {ok} ok, {failed} failed", ok + failed);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

enum Failure {
    Refused(Vec<String>),
    Error(anyhow::Error),
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Incompatible { details, .. } => Self::Refused(details),
            RegistryError::InvalidSchema(reason) => Self::Refused(vec![reason]),
            other => Self::Error(other.into()),
        }
    }
}

async fn check_one(registry: &dyn SchemaRegistry, s: &Loaded) -> Result<String, Failure> {
    match registry.lookup(&s.subject, &s.text).await {
        Ok(v) => {
            return Ok(format!(
                "already registered as version {} (id {})",
                v.version, v.id
            ));
        }
        Err(RegistryError::SubjectNotFound(_)) => {
            return Ok("new subject, nothing to be compatible with".into());
        }
        Err(RegistryError::SchemaNotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let level = registry.config(Some(&s.subject), true).await?;
    let result = registry
        .check_compatibility(&s.subject, VersionSpec::Latest, &s.text)
        .await?;
    if result.is_compatible {
        Ok(format!("compatible ({level})"))
    } else if result.messages.is_empty() {
        Err(Failure::Refused(vec![format!(
            "not {level} compatible (the registry gave no details)"
        )]))
    } else {
        Err(Failure::Refused(
            result
                .messages
                .into_iter()
                .map(|m| format!("{m} [{level}]"))
                .collect(),
        ))
    }
}

async fn register_one(registry: &dyn SchemaRegistry, s: &Loaded) -> Result<String, Failure> {
    let id = registry.register(&s.subject, &s.text).await?;
    let v = registry.lookup(&s.subject, &s.text).await?;
    Ok(format!("registered as version {} (id {id})", v.version))
}
