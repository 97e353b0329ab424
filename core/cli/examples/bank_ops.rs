//! The banking demo's operations binary: the `orchestrix` commands with the
//! bank's application, so that `catalog`, `projections rebuild` and
//! `dlq replay` run its code.
//!
//! ```text
//! cargo run -p orchestrix-cli --example bank_ops -- catalog
//! cargo run -p orchestrix-cli --example bank_ops -- --store sqlite://bank.db projections ls
//! ```

use std::process::ExitCode;

use orchestrix::Application;
use orchestrix_cli::{Context, main_with};
use orchestrix_demo_banking::BankModule;
use orchestrix_ops::Operations;

#[tokio::main]
async fn main() -> ExitCode {
    main_with(Context::with(Box::new(|store| {
        Box::pin(async move {
            let app = Application::builder(store)
                .module(BankModule::default())
                .build()?;
            Ok(Operations::application(app))
        })
    })))
    .await
}
