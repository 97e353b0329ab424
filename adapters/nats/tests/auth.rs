//! Auth and TLS options against private `nats-server` processes (token,
//! user and password, NKey, TLS with a private CA). Skipped without the
//! `nats-server` binary (set `ORCHESTRIX_NATS_SERVER_BIN`), failed under CI.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use orchestrix_nats::{Auth, NatsConfig, TlsConfig};

struct Server {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn server_binary(test: &str) -> Option<PathBuf> {
    let candidate =
        std::env::var("ORCHESTRIX_NATS_SERVER_BIN").unwrap_or_else(|_| "nats-server".to_owned());
    let found = Command::new(&candidate)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return Some(PathBuf::from(candidate));
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    assert!(
        !ci,
        "{test}: CI=true but no `{candidate}` binary to start a private server (set ORCHESTRIX_NATS_SERVER_BIN)"
    );
    eprintln!("SKIPPED {test}: no `{candidate}` binary (set ORCHESTRIX_NATS_SERVER_BIN)");
    None
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts a private server with `args` (plus a config file, if given).
fn start(test: &str, args: &[&str], config_file: Option<&str>) -> Option<Server> {
    let binary = server_binary(test)?;
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("orchestrix-nats-auth-{}", common::suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut command = Command::new(binary);
    command
        .args(["-a", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(text) = config_file {
        let path = dir.join("server.conf");
        std::fs::write(&path, text).unwrap();
        command.args(["-c", path.to_str().unwrap()]);
    }
    let child = command.spawn().expect("start nats-server");
    let server = Server { child, port, dir };
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the private nats-server did not listen within 5 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(server)
}

fn config(server: &Server, scheme: &str, auth: Auth) -> NatsConfig {
    NatsConfig {
        auth,
        request_timeout_ms: 2_000,
        ..NatsConfig::new(format!("{scheme}://127.0.0.1:{}", server.port))
    }
}

async fn assert_connects(config: &NatsConfig) {
    let client = orchestrix_nats::connect(config)
        .await
        .unwrap_or_else(|e| panic!("connect with {:?}: {e}", config.auth));
    client.flush().await.unwrap();
}

async fn assert_refused(config: &NatsConfig) {
    let err = orchestrix_nats::connect(config)
        .await
        .expect_err("bad credentials must be refused");
    assert!(!err.is_transient(), "a refused login is permanent: {err}");
    assert!(err.to_string().contains("cannot connect to"), "{err}");
}

#[tokio::test]
async fn nats_auth_token() {
    let Some(server) = start("nats_auth_token", &["--auth", "s3cret-token"], None) else {
        return;
    };
    assert_connects(&config(
        &server,
        "nats",
        Auth::Token {
            token: "s3cret-token".into(),
        },
    ))
    .await;
    assert_refused(&config(
        &server,
        "nats",
        Auth::Token {
            token: "wrong".into(),
        },
    ))
    .await;
    assert_refused(&config(&server, "nats", Auth::None)).await;
}

#[tokio::test]
async fn nats_auth_user_password() {
    let Some(server) = start(
        "nats_auth_user_password",
        &["--user", "svc", "--pass", "pw"],
        None,
    ) else {
        return;
    };
    assert_connects(&config(
        &server,
        "nats",
        Auth::UserPassword {
            user: "svc".into(),
            password: "pw".into(),
        },
    ))
    .await;
    assert_refused(&config(
        &server,
        "nats",
        Auth::UserPassword {
            user: "svc".into(),
            password: "nope".into(),
        },
    ))
    .await;
    // Credentials in the URL work too.
    let mut in_url = config(&server, "nats", Auth::None);
    in_url.urls = vec![format!("nats://svc:pw@127.0.0.1:{}", server.port)];
    assert_connects(&in_url).await;
}

#[tokio::test]
async fn nats_auth_nkey() {
    let user = nkeys::KeyPair::new_user();
    let conf = format!(
        "authorization {{ users = [ {{ nkey: \"{}\" }} ] }}",
        user.public_key()
    );
    let Some(server) = start("nats_auth_nkey", &[], Some(&conf)) else {
        return;
    };
    assert_connects(&config(
        &server,
        "nats",
        Auth::Nkey {
            seed: user.seed().unwrap(),
        },
    ))
    .await;
    let stranger = nkeys::KeyPair::new_user();
    assert_refused(&config(
        &server,
        "nats",
        Auth::Nkey {
            seed: stranger.seed().unwrap(),
        },
    ))
    .await;
}

fn openssl(dir: &Path, args: &[&str]) -> bool {
    Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[tokio::test]
async fn nats_tls_with_a_private_ca() {
    let dir = std::env::temp_dir().join(format!("orchestrix-nats-tls-{}", common::suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "1",
            "-subj",
            "/CN=orchestrix-test-ca",
        ],
    ) && openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=localhost",
        ],
    ) && std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .is_ok()
        && openssl(
            &dir,
            &[
                "x509",
                "-req",
                "-in",
                "server.csr",
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                "server.pem",
                "-days",
                "1",
                "-extfile",
                "ext.cnf",
            ],
        );
    if !made {
        eprintln!("SKIPPED nats_tls_with_a_private_ca: `openssl` could not make test certificates");
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let cert = dir.join("server.pem");
    let key = dir.join("server.key");
    let Some(server) = start(
        "nats_tls_with_a_private_ca",
        &[
            "--tls",
            "--tlscert",
            cert.to_str().unwrap(),
            "--tlskey",
            key.to_str().unwrap(),
        ],
        None,
    ) else {
        return;
    };
    let mut trusted = config(&server, "tls", Auth::None);
    trusted.tls = TlsConfig {
        required: true,
        ca_file: Some(dir.join("ca.pem")),
        ..TlsConfig::default()
    };
    assert_connects(&trusted).await;
    // Without the CA the server's certificate is not trusted.
    let mut untrusted = config(&server, "tls", Auth::None);
    untrusted.tls = TlsConfig {
        required: true,
        ..TlsConfig::default()
    };
    assert!(
        orchestrix_nats::connect(&untrusted).await.is_err(),
        "an unknown CA must be refused"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
