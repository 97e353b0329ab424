//! The e-commerce demo's operations binary: the `orchestrix` commands with the
//! bank's application, so that `catalog`, `projections rebuild` and
//! `dlq replay` run its code.
//!
//! ```text
//! cargo run -p orchestrix-cli --example shop_ops -- catalog
//! cargo run -p orchestrix-cli --example shop_ops -- --store sqlite://shop.db projections ls
//! ```

use std::process::ExitCode;

use orchestrix::Application;
use orchestrix_cli::{Context, main_with};
use orchestrix_demo_ecommerce::ShopModule;
use orchestrix_ops::Operations;

#[tokio::main]
async fn main() -> ExitCode {
    main_with(Context::with(Box::new(|store| {
        Box::pin(async move {
            let app = Application::builder(store)
                .module(ShopModule::default())
                .build()?;
            Ok(Operations::application(app))
        })
    })))
    .await
}
