//! The TLS files of `--ca`, `--cert` and `--key`, read and checked one by one before tonic
//! sees them.
//!
//! tonic reports any problem with them as a bare `transport error`, and it skips CA
//! certificates it cannot parse without a word (the handshake then fails later for an unknown
//! issuer). Here each file is refused on its own, naming the option, the file and the cause:
//! missing or unreadable, no PEM block of the right kind, a PEM block that does not decode, a
//! certificate or key that rustls cannot use, a key that does not belong to the certificate.

use std::path::Path;

use rustls::RootCertStore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::error::{Error, Result};

/// The files as the user named them.
#[derive(Clone, Copy, Debug)]
pub(crate) struct TlsFiles<'a> {
    /// `--ca`.
    pub(crate) ca: &'a Path,
    /// `--cert` and `--key`, for mutual TLS.
    pub(crate) identity: Option<(&'a Path, &'a Path)>,
}

impl TlsFiles<'_> {
    /// `--ca FILE` and, for mutual TLS, `--cert FILE --key FILE`.
    pub(crate) fn named(&self) -> String {
        let ca = format!("--ca {}", self.ca.display());
        match self.identity {
            Some((cert, key)) => {
                format!("{ca}, --cert {}, --key {}", cert.display(), key.display())
            }
            None => ca,
        }
    }
}

/// Reads and checks the files; the TLS settings of tonic's channel.
pub(crate) async fn client_config(files: TlsFiles<'_>) -> Result<ClientTlsConfig> {
    let ca_pem = read("--ca", files.ca).await?;
    certificates("--ca", files.ca, &ca_pem, true)?;
    let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca_pem));
    if let Some((cert, key)) = files.identity {
        let cert_pem = read("--cert", cert).await?;
        let key_pem = read("--key", key).await?;
        check_identity(cert, &cert_pem, key, &key_pem)?;
        tls = tls.identity(Identity::from_pem(cert_pem, key_pem));
    }
    Ok(tls)
}

fn file_error(option: &'static str, path: &Path, cause: impl Into<String>) -> Error {
    Error::TlsFile {
        option,
        path: path.to_owned(),
        cause: cause.into(),
    }
}

async fn read(option: &'static str, path: &Path) -> Result<Vec<u8>> {
    tokio::fs::read(path)
        .await
        .map_err(|e| file_error(option, path, format!("cannot read it: {e}")))
}

/// The certificates of a PEM file: at least one, each a well-formed X.509 certificate.
fn certificates(
    option: &'static str,
    path: &Path,
    pem: &[u8],
    ca: bool,
) -> Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(option, path, pem_words(&e)))?;
    if certs.is_empty() {
        return Err(file_error(
            option,
            path,
            "holds no PEM certificate (a -----BEGIN CERTIFICATE----- block)",
        ));
    }
    // Adding a certificate as a trust anchor parses it, which a client certificate must
    // survive as well.
    let mut store = RootCertStore::empty();
    for (i, cert) in certs.iter().enumerate() {
        store.add(cert.clone()).map_err(|e| {
            let what = if ca {
                "a CA certificate"
            } else {
                "a certificate"
            };
            file_error(
                option,
                path,
                format!("certificate {} in it is not {what}: {e}", i + 1),
            )
        })?;
    }
    Ok(certs)
}

/// `--cert` holds certificates, `--key` a private key rustls can sign with, and the key
/// belongs to the first certificate.
fn check_identity(cert: &Path, cert_pem: &[u8], key: &Path, key_pem: &[u8]) -> Result<()> {
    let chain = certificates("--cert", cert, cert_pem, false)?;
    let der = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => file_error(
            "--key",
            key,
            "holds no PEM private key (a -----BEGIN PRIVATE KEY-----, EC PRIVATE KEY or \
             RSA PRIVATE KEY block)",
        ),
        other => file_error("--key", key, pem_words(&other)),
    })?;
    let provider: CryptoProvider = rustls::crypto::ring::default_provider();
    if let Err(e) = provider.key_provider.load_private_key(der.clone_key()) {
        return Err(file_error(
            "--key",
            key,
            format!("the key cannot be used: {e}"),
        ));
    }
    CertifiedKey::from_der(chain, der, &provider)
        .map(drop)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => file_error(
                "--key",
                key,
                format!(
                    "the key does not belong to the certificate in --cert {}",
                    cert.display()
                ),
            ),
            other => file_error("--cert", cert, other.to_string()),
        })
}

/// A PEM parse error in words (rustls prints the offending line as a byte list).
fn pem_words(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "is not valid PEM: a block has no -----END line".into()
        }
        pem::Error::IllegalSectionStart { .. } => {
            "is not valid PEM: a -----BEGIN line is malformed".into()
        }
        pem::Error::Base64Decode(detail) => {
            format!("is not valid PEM: a block is not base64 ({detail})")
        }
        pem::Error::SectionTooLarge => "is not valid PEM: a block is too large".into(),
        other => format!("is not valid PEM: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(DATA).join(name)
    }

    fn fixture_bytes(name: &str) -> Vec<u8> {
        std::fs::read(fixture(name)).unwrap_or_default()
    }

    fn cause_of(result: Result<impl std::fmt::Debug>) -> String {
        match result {
            Err(Error::TlsFile { cause, .. }) => cause,
            other => format!("not a TLS file error: {other:?}"),
        }
    }

    #[test]
    fn the_test_fixtures_pass_every_check() -> Result<()> {
        let ca = fixture("ca.pem");
        assert_eq!(
            certificates("--ca", &ca, &fixture_bytes("ca.pem"), true)?.len(),
            1
        );
        check_identity(
            &fixture("client.pem"),
            &fixture_bytes("client.pem"),
            &fixture("client.key"),
            &fixture_bytes("client.key"),
        )
    }

    #[test]
    fn a_file_without_certificates_or_with_a_broken_block_is_refused() {
        let path = Path::new("/x/ca.pem");
        let none = cause_of(certificates("--ca", path, b"hello\n", true));
        assert!(none.starts_with("holds no PEM certificate"), "{none}");
        // A key is no certificate.
        let key = cause_of(certificates(
            "--ca",
            path,
            &fixture_bytes("client.key"),
            true,
        ));
        assert!(key.starts_with("holds no PEM certificate"), "{key}");
        let cut = cause_of(certificates(
            "--ca",
            path,
            b"-----BEGIN CERTIFICATE-----\nMIIB\n",
            true,
        ));
        assert!(cut.contains("has no -----END line"), "{cut}");
        let garbage = cause_of(certificates(
            "--ca",
            path,
            b"-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n",
            true,
        ));
        assert!(
            garbage.starts_with("certificate 1 in it is not a CA certificate"),
            "{garbage}"
        );
    }

    #[test]
    fn a_key_that_is_missing_unusable_or_not_the_certificates_is_refused() {
        let (cert, cert_pem) = (fixture("client.pem"), fixture_bytes("client.pem"));
        let key = Path::new("/x/client.key");
        let check = |pem: &[u8]| cause_of(check_identity(&cert, &cert_pem, key, pem).map(drop));
        assert!(check(&cert_pem).starts_with("holds no PEM private key"));
        let junk = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        assert!(
            check(junk).starts_with("the key cannot be used"),
            "{}",
            check(junk)
        );
        let other = check(&fixture_bytes("server.key"));
        assert!(
            other.starts_with("the key does not belong to the certificate in --cert")
                && other.contains("client.pem"),
            "{other}"
        );
    }
}
