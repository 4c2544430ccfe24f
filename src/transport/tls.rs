//! TLS to the connection manager over rustls (feature `rustls`): which roots
//! are trusted. Certificates are always verified (name and chain); there is no
//! switch to turn that off. A self-hosted CM with a private CA is trusted by
//! adding that CA ([`HttpTransportBuilder::ca_file`](super::HttpTransportBuilder::ca_file)).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use rustls::{ClientConfig, RootCertStore};

/// Why a CA could not be added.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read the CA file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The PEM holds no certificate, or one rustls refuses as a trust anchor.
    #[error("no usable CA certificate in {0}")]
    NoCertificate(String),
}

/// Reads every `CERTIFICATE` block of a PEM file.
pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse_ca_pem(&pem, &path.display().to_string())
}

/// Every `CERTIFICATE` block of `pem`; at least one.
pub(crate) fn parse_ca_pem(
    pem: &[u8],
    what: &str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certificates: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate(what.to_owned()))?;
    // A candidate anchor must parse; refuse the file now rather than fail
    // every handshake later.
    let mut probe = RootCertStore::empty();
    let (added, _) = probe.add_parsable_certificates(certificates.iter().cloned());
    if added == 0 {
        return Err(TlsError::NoCertificate(what.to_owned()));
    }
    Ok(certificates)
}

/// The default trust: the Mozilla roots (webpki-roots), the OS store with
/// feature `native-roots`, and the CAs added by the user.
pub(crate) fn client_config(extra_cas: &[CertificateDer<'static>]) -> ClientConfig {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    #[cfg(feature = "native-roots")]
    {
        let native = rustls_native_certs::load_native_certs();
        for error in &native.errors {
            tracing::warn!(%error, "could not load some OS root certificates");
        }
        roots.add_parsable_certificates(native.certs);
    }
    roots.add_parsable_certificates(extra_cas.iter().cloned());
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth()
}
