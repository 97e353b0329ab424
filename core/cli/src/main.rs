#![doc = include_str!("../README.md")]

mod schema;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Orchestrix operations: event schemas and their registry.
#[derive(Debug, Parser)]
#[command(name = "orchestrix", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check, register and list Avro event schemas in a schema registry.
    #[command(subcommand)]
    Schema(schema::SchemaCommand),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Schema(cmd) => schema::run(cmd).await,
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
