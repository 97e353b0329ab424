//! Service instances of a case's own: started on a free loopback port in a
//! temporary directory, killed or restarted at will, stopped when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// Where the NATS server binary is.
pub const NATS_SERVER: &str = "/usr/sbin/nats-server";
/// Where PostgreSQL 15's binaries are.
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

/// Waits until `host:port` accepts TCP connections.
async fn wait_listening(host: &str, port: u16, limit: Duration) -> anyhow::Result<()> {
    crate::poll(
        &format!("a listener on {host}:{port}"),
        limit,
        Duration::from_millis(50),
        || async move {
            tokio::net::TcpStream::connect((host, port))
                .await
                .ok()
                .map(|_| ())
        },
    )
    .await
}

/// A NATS server with JetStream of this case's own.
#[derive(Debug)]
pub struct Nats {
    host: String,
    netns: Option<String>,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl Nats {
    /// Whether the server binary is installed.
    #[must_use]
    pub fn available() -> bool {
        Path::new(NATS_SERVER).exists()
    }

    /// Starts a server on a free port with a fresh store directory.
    ///
    /// # Errors
    /// When it cannot start or does not listen within 20 s.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1", None).await
    }

    /// Starts a server listening on `host` (an address of the host, or of
    /// the network namespace `netns`, which it then runs in).
    ///
    /// # Errors
    /// When it cannot start or does not listen within 20 s.
    pub async fn start_on(host: &str, netns: Option<&crate::net::Netns>) -> anyhow::Result<Self> {
        let mut nats = Self {
            host: host.to_owned(),
            netns: netns.map(|n| n.name().to_owned()),
            port: crate::free_port()?,
            dir: tempfile::tempdir()?,
            child: None,
        };
        nats.restart().await?;
        Ok(nats)
    }

    /// `nats://HOST:PORT`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("nats://{}:{}", self.host, self.port)
    }

    /// Stops the server gracefully: SIGTERM, then waits for the process to
    /// exit (SIGKILL after `within`). Returns how long it took.
    ///
    /// # Errors
    /// When the process cannot be signalled or waited for.
    pub fn stop(&mut self, within: Duration) -> anyhow::Result<Duration> {
        crate::services::terminate(self.child.take(), within)
    }

    /// Kills the server with SIGKILL (JetStream's files stay).
    ///
    /// # Errors
    /// When the process cannot be killed.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server (again) on the same port and store directory.
    ///
    /// # Errors
    /// When it cannot start or does not listen within 20 s.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        let log = std::fs::File::create(self.dir.path().join("server.log"))?;
        let mut command = if let Some(ns) = &self.netns {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, NATS_SERVER]);
            c
        } else {
            Command::new(NATS_SERVER)
        };
        let child = command
            .args(["-a", &self.host, "-p", &self.port.to_string(), "-js", "-sd"])
            .arg(self.dir.path().join("js"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {NATS_SERVER}"))?;
        self.child = Some(child);
        wait_listening(&self.host, self.port, Duration::from_secs(20)).await
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// How to stop PostgreSQL (`pg_ctl stop -m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PgStop {
    /// Disconnects clients, rolls back their transactions, checkpoints.
    Fast,
    /// Aborts every process at once; crash recovery at the next start.
    Immediate,
}

impl PgStop {
    fn as_str(self) -> &'static str {
        match self {
            Self::Fast => "fast",
            Self::Immediate => "immediate",
        }
    }
}

/// A PostgreSQL 15 cluster of this case's own, run as the `postgres` user.
#[derive(Debug)]
pub struct Postgres {
    port: u16,
    dir: PathBuf,
    _root: tempfile::TempDir,
}

fn as_postgres(command: &str) -> anyhow::Result<()> {
    let output = Command::new("su")
        .args(["postgres", "-s", "/bin/sh", "-c", command])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running `{command}` as postgres"))?;
    if !output.status.success() {
        bail!(
            "`{command}` as postgres: {}\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

impl Postgres {
    /// Whether PostgreSQL 15 is installed (and a `postgres` user to run it).
    #[must_use]
    pub fn available() -> bool {
        Path::new(PG_BIN).join("initdb").exists()
            && Command::new("id")
                .arg("postgres")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    /// `initdb` in a temporary directory, then starts on a free port.
    ///
    /// # Errors
    /// When `initdb` or the start fails.
    pub async fn start() -> anyhow::Result<Self> {
        let root = tempfile::Builder::new()
            .prefix("orx-chaos-pg")
            .tempdir_in("/tmp")?;
        let dir = root.path().join("data");
        let chown = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(root.path())
            .status()?;
        if !chown.success() {
            bail!("chown postgres {}", root.path().display());
        }
        as_postgres(&format!(
            "{PG_BIN}/initdb -D {} -A trust -U postgres --no-sync >/dev/null",
            dir.display()
        ))?;
        let pg = Self {
            port: crate::free_port()?,
            dir,
            _root: root,
        };
        pg.start_again().await?;
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`.
    #[must_use]
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// A `tokio_postgres` connection string through the server's Unix
    /// socket (reachable from a network namespace cut off the network).
    #[must_use]
    pub fn socket_url(&self) -> String {
        let dir = self.dir.parent().unwrap_or(&self.dir);
        format!(
            "host={} port={} user=postgres dbname=postgres",
            dir.display(),
            self.port
        )
    }

    /// Stops the server in `mode`.
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn stop(&self, mode: PgStop) -> anyhow::Result<()> {
        as_postgres(&format!(
            "{PG_BIN}/pg_ctl -D {} -m {} -w stop >/dev/null",
            self.dir.display(),
            mode.as_str()
        ))
    }

    /// Starts the server (after [`stop`](Self::stop)) on the same port.
    ///
    /// # Errors
    /// When `pg_ctl start` fails or the server does not listen in 60 s.
    pub async fn start_again(&self) -> anyhow::Result<()> {
        let dir = self.dir.display();
        as_postgres(&format!(
            "{PG_BIN}/pg_ctl -D {dir} -l {dir}/../server.log -w -t 60 -o \"-p {} -k {dir}/.. -c listen_addresses=127.0.0.1 -c fsync=off\" start >/dev/null",
            self.port
        ))?;
        wait_listening("127.0.0.1", self.port, Duration::from_secs(60)).await
    }

    /// Restarts in `mode`, returning once the server listens again.
    ///
    /// # Errors
    /// As [`stop`](Self::stop) and [`start_again`](Self::start_again).
    pub async fn restart(&self, mode: PgStop) -> anyhow::Result<()> {
        self.stop(mode)?;
        self.start_again().await
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = self.stop(PgStop::Immediate);
    }
}

/// The repository root (for `tests/scripts`).
fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The Kafka classpath `tests/scripts/services.sh` resolves, resolved here
/// the same way when missing.
fn kafka_classpath() -> anyhow::Result<String> {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".to_owned());
    let dir = PathBuf::from(home).join(".cache/orchestrix/services/kafka");
    let out = dir.join("classpath.txt");
    let usable = std::fs::read_to_string(&out).ok().filter(|cp| {
        cp.split(':')
            .next()
            .is_some_and(|first| !first.is_empty() && Path::new(first.trim()).exists())
    });
    if let Some(cp) = usable {
        return Ok(cp.trim().to_owned());
    }
    std::fs::create_dir_all(&dir)?;
    let pom = repo_root().join("tests/scripts/maven/kafka/pom.xml");
    let status = Command::new("mvn")
        .args(["-q", "-B", "-f"])
        .arg(&pom)
        .arg("dependency:build-classpath")
        .arg(format!("-Dmdep.outputFile={}", out.display()))
        .stdout(Stdio::null())
        .status()
        .context("running mvn")?;
    if !status.success() {
        bail!("mvn dependency:build-classpath of {} failed", pom.display());
    }
    Ok(std::fs::read_to_string(&out)?.trim().to_owned())
}

/// An Apache Kafka broker (KRaft, combined broker and controller) of this
/// case's own, as `tests/scripts/services.sh` starts the shared one.
#[derive(Debug)]
pub struct Kafka {
    host: String,
    port: u16,
    dir: tempfile::TempDir,
    classpath: String,
    child: Option<Child>,
}

impl Kafka {
    /// Whether Java and Maven (or a resolved classpath) are there.
    #[must_use]
    pub fn available() -> bool {
        Command::new("java")
            .arg("-version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Formats a fresh data directory and starts a broker on free ports.
    ///
    /// # Errors
    /// When the classpath, the formatting or the start fails.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_on("127.0.0.1").await
    }

    /// As [`start`](Self::start), the client listener on `host` (an address
    /// of the host's, e.g. a [`HostAddr`](crate::net::HostAddr) that network
    /// namespaces reach); the controller stays on loopback.
    ///
    /// # Errors
    /// When the classpath, the formatting or the start fails.
    pub async fn start_on(host: &str) -> anyhow::Result<Self> {
        let classpath = kafka_classpath()?;
        let dir = tempfile::tempdir()?;
        let (port, controller) = (crate::free_port()?, crate::free_port()?);
        let template =
            std::fs::read_to_string(repo_root().join("tests/scripts/kafka/server.properties"))?;
        let properties = template
            .replace("@DATA@", &dir.path().join("data").display().to_string())
            .replace("127.0.0.1:9092", &format!("{host}:{port}"))
            .replace("127.0.0.1:9093", &format!("127.0.0.1:{controller}"));
        let props = dir.path().join("server.properties");
        std::fs::write(&props, properties)?;
        let uuid = Command::new("java")
            .args(["-cp", &classpath, "kafka.tools.StorageTool", "random-uuid"])
            .stderr(Stdio::null())
            .output()?;
        let uuid = String::from_utf8_lossy(&uuid.stdout)
            .lines()
            .last()
            .unwrap_or_default()
            .trim()
            .to_owned();
        let format = Command::new("java")
            .args([
                "-cp",
                &classpath,
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
            ])
            .arg(&uuid)
            .arg("-c")
            .arg(&props)
            .output()?;
        if !format.status.success() {
            bail!(
                "formatting Kafka storage: {}",
                String::from_utf8_lossy(&format.stderr)
            );
        }
        let mut kafka = Self {
            host: host.to_owned(),
            port,
            dir,
            classpath,
            child: None,
        };
        kafka.restart().await?;
        Ok(kafka)
    }

    /// `HOST:PORT`.
    #[must_use]
    pub fn brokers(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }

    /// Stops the broker gracefully: SIGTERM, then waits for the process to
    /// exit (SIGKILL after `within`). Returns how long it took.
    ///
    /// # Errors
    /// When the process cannot be signalled or waited for.
    pub fn stop(&mut self, within: Duration) -> anyhow::Result<Duration> {
        crate::services::terminate(self.child.take(), within)
    }

    /// Kills the broker with SIGKILL (its log directory stays).
    ///
    /// # Errors
    /// When the process cannot be killed.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the broker (again) on the same ports and data directory;
    /// returns once it logged "Kafka Server started".
    ///
    /// # Errors
    /// When it cannot start or is not up within 120 s.
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        self.kill()?;
        let log_path = self.dir.path().join("kafka.log");
        let log = std::fs::File::create(&log_path)?;
        let child = Command::new("java")
            .args(["-Xms128m", "-Xmx512m", "-XX:+UseG1GC"])
            .arg(format!(
                "-Dlog4j2.configurationFile={}",
                repo_root()
                    .join("tests/scripts/kafka/log4j2.properties")
                    .display()
            ))
            .args(["-cp", &self.classpath])
            .arg("kafka.Kafka")
            .arg(self.dir.path().join("server.properties"))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting the Kafka broker")?;
        self.child = Some(child);
        crate::wait_started_on(
            "the Kafka broker started",
            &log_path,
            "Kafka Server started",
            &self.host,
            self.port,
            Duration::from_secs(120),
        )
        .await
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// SIGTERM to `child`, then waits for it to exit; SIGKILL after `within`.
pub(crate) fn terminate(
    child: Option<std::process::Child>,
    within: Duration,
) -> anyhow::Result<Duration> {
    let began = std::time::Instant::now();
    let Some(mut child) = child else {
        return Ok(Duration::ZERO);
    };
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .context("sending SIGTERM")?;
    anyhow::ensure!(status.success(), "kill -TERM {} failed", child.id());
    while child.try_wait()?.is_none() {
        if began.elapsed() > within {
            child.kill()?;
            child.wait()?;
            anyhow::bail!("did not stop within {within:?} of SIGTERM (killed)");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(began.elapsed())
}
