//! TLS through rustls (feature `tls`).

use scylla::client::session_builder::SessionBuilder;

use crate::config::ScyllaConfig;

#[cfg(feature = "tls")]
pub(crate) fn configure(
    builder: SessionBuilder,
    config: &ScyllaConfig,
) -> orchestrix::Result<SessionBuilder> {
    use std::sync::Arc;

    use orchestrix::Error;
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

    use crate::config::TlsMode;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls_builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::invalid("scylla tls", e.to_string()))?;
    let client = match config.tls {
        TlsMode::NoVerify => {
            #[derive(Debug)]
            struct NoVerify(Arc<rustls::crypto::CryptoProvider>);
            impl rustls::client::danger::ServerCertVerifier for NoVerify {
                fn verify_server_cert(
                    &self,
                    _: &CertificateDer<'_>,
                    _: &[CertificateDer<'_>],
                    _: &ServerName<'_>,
                    _: &[u8],
                    _: UnixTime,
                ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error>
                {
                    Ok(rustls::client::danger::ServerCertVerified::assertion())
                }
                fn verify_tls12_signature(
                    &self,
                    message: &[u8],
                    cert: &CertificateDer<'_>,
                    dss: &rustls::DigitallySignedStruct,
                ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
                {
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
                    dss: &rustls::DigitallySignedStruct,
                ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error>
                {
                    rustls::crypto::verify_tls13_signature(
                        message,
                        cert,
                        dss,
                        &self.0.signature_verification_algorithms,
                    )
                }
                fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
                    self.0.signature_verification_algorithms.supported_schemes()
                }
            }
            tls_builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerify(provider)))
                .with_no_client_auth()
        }
        _ => {
            let mut roots = rustls::RootCertStore::empty();
            match &config.ca_file {
                Some(path) => {
                    for cert in CertificateDer::pem_file_iter(path).map_err(|e| {
                        Error::invalid(
                            format!("scylla ca_file `{}`", path.display()),
                            e.to_string(),
                        )
                    })? {
                        let cert = cert.map_err(|e| {
                            Error::invalid(
                                format!("scylla ca_file `{}`", path.display()),
                                e.to_string(),
                            )
                        })?;
                        roots.add(cert).map_err(|e| {
                            Error::invalid(
                                format!("scylla ca_file `{}`", path.display()),
                                e.to_string(),
                            )
                        })?;
                    }
                }
                None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
            }
            tls_builder
                .with_root_certificates(roots)
                .with_no_client_auth()
        }
    };
    Ok(builder.tls_context(Some(Arc::new(client))))
}

#[cfg(not(feature = "tls"))]
pub(crate) fn configure(
    _builder: SessionBuilder,
    _config: &ScyllaConfig,
) -> orchestrix::Result<SessionBuilder> {
    Err(orchestrix::Error::invalid(
        "scylla tls",
        "TLS needs the `tls` feature of orchestrix-scylla",
    ))
}
