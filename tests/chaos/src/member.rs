//! A worker process of a case (a `[[bin]]` of this crate), optionally in a
//! network namespace: its stdout lines collected, its stderr in a log file,
//! signals sent with `kill`. The binaries print `MEMBER READY` once started
//! and `MEMBER STOPPED ...` after a SIGTERM.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::net::Netns;

/// A running worker process.
#[derive(Debug)]
pub struct Member {
    name: &'static str,
    pid: u32,
    child: tokio::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
    netns: Option<Netns>,
}

impl Member {
    /// Starts `bin` with `CHAOS_NAME=name` and `env`, in `netns` if given,
    /// its log in `dir`; returns once it printed `MEMBER READY`.
    ///
    /// # Errors
    /// When it cannot start or is not ready within 60 s.
    pub async fn start(
        bin: &str,
        name: &'static str,
        env: &[(&str, String)],
        dir: &Path,
        netns: Option<Netns>,
    ) -> anyhow::Result<Self> {
        let mut command = match &netns {
            Some(ns) => ns.command(bin),
            None => tokio::process::Command::new(bin),
        };
        let log = dir.join(format!("member-{name}.log"));
        command
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("CHAOS_NAME", name)
            .env("RUST_LOG", "orchestrix_kafka=info,orchestrix_nats=info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .kill_on_drop(true);
        let mut child = command.spawn().with_context(|| format!("starting {bin}"))?;
        let pid = child.id().context("no pid")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = child.stdout.take().context("no stdout")?;
        {
            let lines = lines.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(out).lines();
                while let Ok(Some(line)) = reader.next_line().await {
                    lines
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .push(line);
                }
            });
        }
        let member = Self {
            name,
            pid,
            child,
            lines,
            log,
            netns,
        };
        member
            .wait_line("MEMBER READY", Duration::from_secs(60))
            .await?;
        Ok(member)
    }

    /// Its name.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its network namespace, if it runs in one.
    #[must_use]
    pub fn netns(&self) -> Option<&Netns> {
        self.netns.as_ref()
    }

    /// Its log (stderr) so far.
    #[must_use]
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Every stdout line so far.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The last stdout line starting with `prefix`, if any.
    #[must_use]
    pub fn last_line(&self, prefix: &str) -> Option<String> {
        self.lines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .rev()
            .find(|l| l.starts_with(prefix))
            .cloned()
    }

    /// Waits for a stdout line starting with `prefix`.
    ///
    /// # Errors
    /// When none comes within `limit`.
    pub async fn wait_line(&self, prefix: &str, limit: Duration) -> anyhow::Result<String> {
        crate::poll(
            &format!("member {} printing {prefix}", self.name),
            limit,
            Duration::from_millis(50),
            || {
                let found = self.last_line(prefix);
                async move { found }
            },
        )
        .await
    }

    /// Sends `signal` (`-STOP`, `-CONT`, `-TERM`, ...).
    ///
    /// # Errors
    /// When `kill` fails.
    pub fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = std::process::Command::new("kill")
            .args([signal, &self.pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill {signal} {}", self.pid);
        }
        Ok(())
    }

    /// SIGTERM; returns its `MEMBER STOPPED` line and its log once it exited
    /// successfully.
    ///
    /// # Errors
    /// When it does not stop within 60 s or exits with an error.
    pub async fn stop(mut self) -> anyhow::Result<(String, String)> {
        self.signal("-TERM")?;
        let stats = self
            .wait_line("MEMBER STOPPED", Duration::from_secs(60))
            .await?;
        let status = tokio::time::timeout(Duration::from_secs(30), self.child.wait())
            .await
            .context("member did not exit")??;
        if !status.success() {
            bail!("member {} exited with {status}", self.name);
        }
        let log = self.log_text();
        drop(self.netns.take());
        Ok((stats, log))
    }
}
