//! Processes for the multi-process tests in `tests/`: `dist-writer` appends
//! to a store, `dist-relay` relays a store to Kafka. Each reads its settings
//! from env vars and runs until done or killed.

/// An env var, or an error naming it.
///
/// # Errors
/// When the variable is missing.
pub fn env(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .try_init();
}
