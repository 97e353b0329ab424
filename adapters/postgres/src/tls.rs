//! TLS connectors for the pool and the LISTEN connection.
//!
//! rustls with the ring provider (feature `tls`): pure Rust plus ring's
//! bundled assembly, so building needs no system OpenSSL headers and the
//! binary links no system library; `postgres-native-tls` would link OpenSSL.

use orchestrix::Result;

use crate::config::{PostgresConfig, TlsMode};

/// The connector a configuration asks for.
#[derive(Clone)]
pub(crate) enum Connector {
    /// Plain TCP (also `prefer` without the `tls` feature).
    Plain,
    /// rustls.
    #[cfg(feature = "tls")]
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Plain => f.write_str("Plain"),
            #[cfg(feature = "tls")]
            Self::Rustls(_) => f.write_str("Rustls"),
        }
    }
}

impl Connector {
    /// Builds the connector for `config`.
    ///
    /// # Errors
    /// [`orchestrix::Error::FeatureNotEnabled`] for `require`/`verify-full` without the
    /// `tls` feature; [`orchestrix::Error::InvalidInput`] for an unreadable CA file.
    pub(crate) fn new(config: &PostgresConfig) -> Result<Self> {
        match config.tls {
            TlsMode::Disable => Ok(Self::Plain),
            #[cfg(not(feature = "tls"))]
            TlsMode::Prefer => Ok(Self::Plain),
            #[cfg(not(feature = "tls"))]
            TlsMode::Require | TlsMode::VerifyFull => Err(orchestrix::Error::FeatureNotEnabled {
                scheme: "postgres".into(),
                feature: "tls",
                krate: "orchestrix-postgres",
            }),
            #[cfg(feature = "tls")]
            mode => rustls_impl::connector(mode, config.ca_file.as_deref()).map(Self::Rustls),
        }
    }

    /// Opens one connection with this connector and spawns its driver,
    /// which forwards asynchronous messages (notifications) to `on_message`.
    pub(crate) async fn connect(
        &self,
        pg: &tokio_postgres::Config,
        on_message: impl FnMut(tokio_postgres::AsyncMessage) -> bool + Send + 'static,
    ) -> Result<(tokio_postgres::Client, tokio::task::JoinHandle<()>)> {
        match self {
            Self::Plain => {
                let (client, conn) = pg
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(|e| crate::error::from_pg("connect", e))?;
                Ok((client, tokio::spawn(drive(conn, on_message))))
            }
            #[cfg(feature = "tls")]
            Self::Rustls(tls) => {
                let (client, conn) = pg
                    .connect(tls.clone())
                    .await
                    .map_err(|e| crate::error::from_pg("connect", e))?;
                Ok((client, tokio::spawn(drive(conn, on_message))))
            }
        }
    }

    /// A deadpool manager using this connector.
    pub(crate) fn manager(&self, pg: tokio_postgres::Config) -> deadpool_postgres::Manager {
        let config = deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        };
        match self {
            Self::Plain => {
                deadpool_postgres::Manager::from_config(pg, tokio_postgres::NoTls, config)
            }
            #[cfg(feature = "tls")]
            Self::Rustls(tls) => deadpool_postgres::Manager::from_config(pg, tls.clone(), config),
        }
    }
}

async fn drive<S, T>(
    mut conn: tokio_postgres::Connection<S, T>,
    mut on_message: impl FnMut(tokio_postgres::AsyncMessage) -> bool,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use futures::StreamExt as _;
    let mut messages = futures::stream::poll_fn(move |cx| conn.poll_message(cx));
    while let Some(message) = messages.next().await {
        match message {
            Ok(m) => {
                if !on_message(m) {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "postgres listen connection ended");
                return;
            }
        }
    }
}

#[cfg(feature = "tls")]
mod rustls_impl {
    use std::path::Path;
    use std::sync::Arc;

    use orchestrix::{Error, Result};
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

    use crate::config::TlsMode;

    pub(super) fn connector(
        mode: TlsMode,
        ca_file: Option<&Path>,
    ) -> Result<tokio_postgres_rustls::MakeRustlsConnect> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::invalid("postgres TLS", e.to_string()))?;
        let config = if mode == TlsMode::VerifyFull {
            let mut roots = RootCertStore::empty();
            match ca_file {
                Some(path) => {
                    let invalid = |e: String| {
                        Error::invalid(format!("postgres CA file `{}`", path.display()), e)
                    };
                    for cert in
                        CertificateDer::pem_file_iter(path).map_err(|e| invalid(e.to_string()))?
                    {
                        roots
                            .add(cert.map_err(|e| invalid(e.to_string()))?)
                            .map_err(|e| invalid(e.to_string()))?;
                    }
                    if roots.is_empty() {
                        return Err(invalid("holds no certificate".into()));
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        };
        Ok(tokio_postgres_rustls::MakeRustlsConnect::new(config))
    }

    /// libpq's `prefer`/`require`: encrypt, but accept any certificate.
    #[derive(Debug)]
    struct NoVerify(Arc<CryptoProvider>);

    impl ServerCertVerifier for NoVerify {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}
