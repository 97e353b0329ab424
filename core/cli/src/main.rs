//! The `orchestrix` command. See the crate README for the commands and exit codes.

use std::process::ExitCode;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    orchestrix_cli::main_with(orchestrix_cli::Context::generic()).await
}
