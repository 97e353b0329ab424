//! Connecting: [`NatsConfig`] auth and TLS settings into
//! [`async_nats::ConnectOptions`].

use async_nats::ConnectOptions;
use async_nats::jetstream;
use orchestrix::Result;

use crate::config::{Auth, NatsConfig};
use crate::error::{client, connect_is_transient};

/// async-nats builds its TLS configuration on rustls's process-wide default
/// crypto provider, which rustls picks from its features, and cannot pick
/// when an application compiles in more than one (`ring`, which async-nats
/// uses, and `aws-lc-rs`, which other crates turn on, e.g. the lakehouse
/// sink's deltalake): every TLS connection then panicked. Installs ring
/// unless the application installed a provider.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Another thread may have installed one meanwhile: fine either way.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The client options that `config` describes: auth, TLS, connection name
/// and timeouts. Reads the creds file, if any.
///
/// # Errors
/// A permanent [`orchestrix::Error::Backend`] when the creds file cannot be
/// read, [`orchestrix::Error::InvalidInput`] when the config is invalid.
pub async fn connect_options(config: &NatsConfig) -> Result<ConnectOptions> {
    config.validate()?;
    ensure_crypto_provider();
    let mut options = match &config.auth {
        Auth::None => match credentials_in_urls(config) {
            Some((user, Some(password))) => ConnectOptions::with_user_and_password(user, password),
            Some((token, None)) => ConnectOptions::with_token(token),
            None => ConnectOptions::new(),
        },
        Auth::Token { token } => ConnectOptions::with_token(token.clone()),
        Auth::UserPassword { user, password } => {
            ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        Auth::Nkey { seed } => ConnectOptions::with_nkey(seed.clone()),
        Auth::CredsFile { path } => {
            ConnectOptions::with_credentials_file(path)
                .await
                .map_err(|e| {
                    client(
                        "connect",
                        false,
                        format!("cannot read the creds file {}", path.display()),
                        e,
                    )
                })?
        }
    };
    let tls = &config.tls;
    if tls.required {
        options = options.require_tls(true);
    }
    if let Some(ca) = &tls.ca_file {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&tls.client_cert, &tls.client_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if let Some(name) = &config.connection_name {
        options = options.name(name);
    }
    Ok(options
        .connection_timeout(config.request_timeout())
        .request_timeout(Some(config.request_timeout())))
}

/// `user:password@` or `token@` from the first server URL that has them
/// (the client library does not read them from the URL itself).
fn credentials_in_urls(config: &NatsConfig) -> Option<(String, Option<String>)> {
    config.urls.iter().find_map(|url| {
        let addr: async_nats::ServerAddr = url.parse().ok()?;
        let user = addr.username()?.to_owned();
        Some((user, addr.password().map(str::to_owned)))
    })
}

/// Connects to the servers of `config`.
///
/// ```no_run
/// use orchestrix_nats::{Auth, NatsConfig};
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let config = NatsConfig { auth: Auth::Token { token: "s3cret".into() }, ..NatsConfig::new("nats://127.0.0.1:4222") };
/// let client = orchestrix_nats::connect(&config).await?;
/// client.flush().await.ok();
/// # Ok::<(), orchestrix::Error>(()) }).unwrap();
/// ```
///
/// # Errors
/// [`orchestrix::Error::Backend`]: transient when the server is unreachable or
/// slow, permanent for bad credentials, a bad URL or a TLS failure.
pub async fn connect(config: &NatsConfig) -> Result<async_nats::Client> {
    let options = connect_options(config).await?;
    let servers = config
        .urls
        .iter()
        .map(|u| orchestrix::url::redact(u))
        .collect::<Vec<_>>()
        .join(", ");
    options.connect(config.urls.as_slice()).await.map_err(|e| {
        client(
            "connect",
            connect_is_transient(&e),
            format!("cannot connect to {servers}"),
            e,
        )
    })
}

/// A JetStream context on `client` with the config's request timeout.
pub(crate) fn jetstream(client: async_nats::Client, config: &NatsConfig) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(config.request_timeout())
        .build(client)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unreadable_creds_file_is_a_clear_permanent_error() {
        let config = NatsConfig {
            auth: Auth::CredsFile {
                path: "/nonexistent/orchestrix.creds".into(),
            },
            ..NatsConfig::default()
        };
        let err = connect_options(&config).await.unwrap_err();
        assert!(!err.is_transient());
        assert!(
            err.to_string().contains("/nonexistent/orchestrix.creds"),
            "{err}"
        );
    }

    #[test]
    fn credentials_come_from_the_url_when_auth_is_none() {
        let with = |url: &str| NatsConfig::new(url);
        assert_eq!(
            credentials_in_urls(&with("nats://svc:pw@h:4222")),
            Some(("svc".into(), Some("pw".into())))
        );
        assert_eq!(
            credentials_in_urls(&with("nats://tok@h:4222")),
            Some(("tok".into(), None))
        );
        assert_eq!(credentials_in_urls(&with("nats://h:4222")), None);
    }

    #[tokio::test]
    async fn every_auth_method_builds_options() {
        for auth in [
            Auth::None,
            Auth::Token { token: "t".into() },
            Auth::UserPassword {
                user: "u".into(),
                password: "p".into(),
            },
            Auth::Nkey {
                seed: "SUAKYRHVIOREXV7EUZTBHUHL7NUMHPMAS7QMDU3GTIUWEI5LDNOXD43IZY".into(),
            },
        ] {
            let config = NatsConfig {
                auth,
                ..NatsConfig::default()
            };
            connect_options(&config).await.unwrap();
        }
    }
}
