//! TLS for the gRPC port (rustls): `--tls-cert` and `--tls-key`, and with `--tls-client-ca`
//! mutual TLS (clients must present a certificate from that CA). The handshake is done by
//! the daemon's accept loop ([`crate::listener`]), not by tonic, so that the HTTP/2 handshake
//! after it can be watched and timed; the acceptor offers only `h2`.
//!
//! An expired certificate still loads (clients refuse it; the daemon cannot fix that), but
//! the daemon warns at start and `/healthz` says so while it lasts: see [`CertificateInfo`].

mod validity;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use tokio_rustls::TlsAcceptor;

use crate::config::Config;
use crate::error::{Error, Result};

/// The ALPN protocol of gRPC.
const ALPN_H2: &[u8] = b"h2";

/// PEM bytes of the TLS files.
#[derive(Clone)]
pub struct TlsFiles {
    cert_path: PathBuf,
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("cert", &self.cert_path)
            .field("mutual", &self.client_ca.is_some())
            .finish_non_exhaustive()
    }
}

/// The server certificate's file and when it stops being valid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// `--tls-cert`.
    pub path: PathBuf,
    /// Unix seconds of the leaf certificate's `notAfter` (`None`: not readable).
    pub not_after: Option<i64>,
}

impl CertificateInfo {
    /// A warning when the certificate has expired at Unix second `now`.
    pub fn expired_warning(&self, now: i64) -> Option<String> {
        let not_after = self.not_after?;
        (now > not_after).then(|| {
            let at = u64::try_from(not_after).map_or_else(
                |_| format!("{not_after} (Unix seconds)"),
                |s| {
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(s),
                    )
                    .to_string()
                },
            );
            format!(
                "the TLS certificate {} (--tls-cert) expired at {at}: clients refuse it; \
                 install a renewed certificate and restart",
                self.path.display()
            )
        })
    }
}

/// What the gRPC port needs for TLS.
#[derive(Clone)]
pub struct TlsSetup {
    /// Does the handshakes.
    pub acceptor: TlsAcceptor,
    /// The server certificate.
    pub certificate: CertificateInfo,
    /// Whether client certificates are required.
    pub mutual: bool,
}

impl std::fmt::Debug for TlsSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsSetup")
            .field("certificate", &self.certificate)
            .field("mutual", &self.mutual)
            .finish_non_exhaustive()
    }
}

impl TlsFiles {
    /// Reads the configured files (blocking); `None` without `--tls-cert`.
    pub fn read(config: &Config) -> Result<Option<Self>> {
        let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
            return Ok(None);
        };
        let read = |path: &Path, what: &'static str| {
            std::fs::read(path).map_err(|e| Error::io(what, path, e))
        };
        Ok(Some(Self {
            cert_path: cert.clone(),
            cert: read(cert, "cannot read TLS certificate")?,
            key: read(key, "cannot read TLS key")?,
            client_ca: config
                .tls_client_ca
                .as_deref()
                .map(|p| read(p, "cannot read TLS client CA"))
                .transpose()?,
        }))
    }

    /// Whether client certificates are required.
    pub fn is_mutual(&self) -> bool {
        self.client_ca.is_some()
    }

    /// Builds the TLS acceptor, refusing unusable certificates or keys now rather than at
    /// the first handshake.
    pub fn setup(self) -> Result<TlsSetup> {
        let bad =
            |option: &str, detail: String| Error::Config(format!("cannot use {option}: {detail}"));
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad("--tls-cert", format!("not a PEM certificate chain ({e})")))?;
        let Some(leaf) = chain.first() else {
            return Err(bad(
                "--tls-cert",
                "the file holds no PEM certificate".into(),
            ));
        };
        let certificate = CertificateInfo {
            path: self.cert_path.clone(),
            not_after: validity::not_after(leaf),
        };
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .map_err(|e| bad("--tls-key", format!("not a PEM private key ({e})")))?;
        // Several crypto providers are compiled in (the object store's HTTP client brings its
        // own): name ring, the one the daemon's rustls is built with, instead of relying on
        // a process-wide default.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad("TLS", e.to_string()))?;
        let mutual = self.client_ca.is_some();
        let builder = match self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca) => {
                let mut roots = RootCertStore::empty();
                for cert in CertificateDer::pem_slice_iter(&ca) {
                    let cert = cert.map_err(|e| {
                        bad("--tls-client-ca", format!("not a PEM certificate ({e})"))
                    })?;
                    roots
                        .add(cert)
                        .map_err(|e| bad("--tls-client-ca", e.to_string()))?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| bad("--tls-client-ca", e.to_string()))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| bad("--tls-cert/--tls-key", e.to_string()))?;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(TlsSetup {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            certificate,
            mutual,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test-only PKI, see `tests/fixtures/README.md`.
    const CERT: &str = include_str!("../../tests/fixtures/server.crt");
    const KEY: &str = include_str!("../../tests/fixtures/server.key");
    const CA: &str = include_str!("../../tests/fixtures/ca.crt");

    fn files(cert: &str, key: &str, ca: Option<&str>) -> TlsFiles {
        TlsFiles {
            cert_path: "server.crt".into(),
            cert: cert.as_bytes().to_vec(),
            key: key.as_bytes().to_vec(),
            client_ca: ca.map(|c| c.as_bytes().to_vec()),
        }
    }

    #[test]
    fn a_valid_certificate_and_key_configure_tls_and_mutual_tls() -> Result<()> {
        let plain = files(CERT, KEY, None).setup()?;
        assert!(!plain.mutual);
        let mutual = files(CERT, KEY, Some(CA));
        assert!(mutual.is_mutual());
        assert!(mutual.setup()?.mutual);
        Ok(())
    }

    #[test]
    fn unusable_pem_is_refused_at_start_with_the_option_names() {
        let err = files("not a cert", KEY, None)
            .setup()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--tls-cert"), "{err}");
        let err = files(CERT, "not a key", None)
            .setup()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--tls-key"), "{err}");
    }

    #[test]
    fn files_are_read_only_when_both_cert_and_key_are_set() -> Result<()> {
        assert!(TlsFiles::read(&Config::default())?.is_none());
        let missing = Config {
            tls_cert: Some("/nonexistent/cert.pem".into()),
            tls_key: Some("/nonexistent/key.pem".into()),
            ..Config::default()
        };
        assert!(TlsFiles::read(&missing).is_err());
        Ok(())
    }

    #[test]
    fn an_expired_certificate_loads_with_a_warning_naming_it() -> Result<()> {
        let expired = TlsFiles {
            cert_path: "expired.crt".into(),
            ..files(
                include_str!("../../tests/fixtures/expired.crt"),
                include_str!("../../tests/fixtures/expired.key"),
                None,
            )
        }
        .setup()?;
        let warning = expired
            .certificate
            .expired_warning(1_700_000_000)
            .unwrap_or_default();
        assert!(warning.contains("expired.crt"), "{warning}");
        assert!(warning.contains("2021-01-01T00:00:00Z"), "{warning}");
        assert_eq!(expired.certificate.expired_warning(1_600_000_000), None);
        let valid = files(CERT, KEY, None).setup()?;
        assert_eq!(valid.certificate.expired_warning(1_700_000_000), None);
        Ok(())
    }
}
