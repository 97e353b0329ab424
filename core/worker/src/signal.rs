//! Waiting for SIGTERM or SIGINT.

use crate::error::{Error, Result};

/// Resolves with the signal's name when the process gets SIGTERM or SIGINT
/// (Ctrl-C). Create it early: a signal that comes before it is registered
/// kills the process.
///
/// # Errors
/// [`Error::Telemetry`] when the signal handlers cannot be installed.
pub fn shutdown_signal() -> Result<impl Future<Output = &'static str> + Send + 'static> {
    let bad = |e: std::io::Error| Error::Telemetry {
        what: "signal handlers",
        reason: e.to_string(),
    };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(bad)?;
        let mut int = signal(SignalKind::interrupt()).map_err(bad)?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            }
        })
    }
    #[cfg(not(unix))]
    {
        let _ = bad;
        Ok(async {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        })
    }
}
