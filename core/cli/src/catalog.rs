//! `orchestrix catalog`: the application's event catalog.

use clap::{Args, ValueEnum};
use orchestrix::catalog::Catalog;
use orchestrix_ops::Operations;

use crate::{Failure, Out};

/// Options of `orchestrix catalog`.
#[derive(Debug, Args)]
pub struct CatalogArgs {
    /// What to print: Markdown with a Mermaid diagram, the Mermaid diagram
    /// alone, or JSON (as `--json`).
    #[arg(long, value_enum, default_value_t = CatalogFormat::Markdown)]
    pub format: CatalogFormat,
}

/// The forms of the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CatalogFormat {
    /// Markdown: a Mermaid flow diagram and a section per aggregate,
    /// projection, saga and handler.
    Markdown,
    /// The Mermaid flow diagram (`flowchart LR`) alone.
    Mermaid,
    /// JSON.
    Json,
}

/// Prints the catalog of the application `ops` was built with.
///
/// # Errors
/// Exit 2 in the generic binary, which has no application.
pub(crate) fn run(args: &CatalogArgs, ops: &Operations, out: &mut Out<'_>) -> Result<(), Failure> {
    let Some(app) = ops.app() else {
        return Err(orchestrix_ops::Error::NeedsApplication(
            "`catalog` lists an application's registrations: run it from the application's own \
             operations binary (orchestrix_cli::main_with with Context::with)"
                .to_owned(),
        )
        .into());
    };
    let catalog = Catalog::of(app);
    let format = if out.json {
        CatalogFormat::Json
    } else {
        args.format
    };
    match format {
        CatalogFormat::Json => out.json(&catalog)?,
        CatalogFormat::Markdown => out.line(catalog.to_markdown().trim_end())?,
        CatalogFormat::Mermaid => out.line(catalog.to_mermaid().trim_end())?,
    }
    Ok(())
}
