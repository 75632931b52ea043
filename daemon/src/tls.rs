//! TLS for the gRPC port (rustls, through tonic): `--tls-cert` and `--tls-key`, and with
//! `--tls-client-ca` mutual TLS (clients must present a certificate from that CA).

use std::path::Path;

use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

use crate::config::Config;
use crate::error::{Error, Result};

/// PEM bytes of the TLS files.
#[derive(Clone)]
pub struct TlsFiles {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles")
            .field("mutual", &self.client_ca.is_some())
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

    /// Configures `server` to serve TLS, refusing unusable certificates or keys now rather
    /// than at the first handshake.
    pub fn apply(self, server: Server) -> Result<Server> {
        // tonic's rustls setup asks for the process-wide crypto provider, and more than one
        // is compiled in (the object store's HTTP client brings its own): pick ring, the one
        // tonic is built with. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(self.cert, self.key));
        if let Some(ca) = self.client_ca {
            tls = tls.client_ca_root(Certificate::from_pem(ca));
        }
        server.tls_config(tls).map_err(|e| {
            let detail =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            Error::Config(format!(
                "cannot use --tls-cert/--tls-key/--tls-client-ca: {detail}"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test-only PKI, see `tests/fixtures/README.md`.
    const CERT: &str = include_str!("../tests/fixtures/server.crt");
    const KEY: &str = include_str!("../tests/fixtures/server.key");
    const CA: &str = include_str!("../tests/fixtures/ca.crt");

    fn files(cert: &str, key: &str, ca: Option<&str>) -> TlsFiles {
        TlsFiles {
            cert: cert.as_bytes().to_vec(),
            key: key.as_bytes().to_vec(),
            client_ca: ca.map(|c| c.as_bytes().to_vec()),
        }
    }

    #[test]
    fn a_valid_certificate_and_key_configure_tls_and_mutual_tls() -> Result<()> {
        files(CERT, KEY, None).apply(Server::builder())?;
        let mutual = files(CERT, KEY, Some(CA));
        assert!(mutual.is_mutual());
        mutual.apply(Server::builder())?;
        Ok(())
    }

    #[test]
    fn unusable_pem_is_refused_at_start_with_the_option_names() {
        let err = files("not a cert", KEY, None)
            .apply(Server::builder())
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("--tls-cert"), "{err}");
        assert!(
            files(CERT, "not a key", None)
                .apply(Server::builder())
                .is_err()
        );
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
}
