//! TLS for the tests: a throwaway certificate authority, host certificates it issues
//! (for `127.0.0.1` and `localhost`), clients that trust it, and a probe that reports
//! which certificate a host presents.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};

/// A certificate authority made for one test.
pub struct TestCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

/// A host certificate and its key, as PEM, with the certificate's DER to compare against
/// what a host presents.
#[derive(Debug, Clone)]
pub struct HostCert {
    /// The certificate (PEM).
    pub cert_pem: String,
    /// The private key (PKCS#8 PEM).
    pub key_pem: String,
    /// The certificate (DER).
    pub der: Vec<u8>,
}

impl HostCert {
    /// Writes the pair to `cert` and `key` (each replaced by a rename, as a renewal tool
    /// does, so a host never reads half a file).
    pub fn write(&self, cert: &Path, key: &Path) {
        write_replacing(key, self.key_pem.as_bytes());
        write_replacing(cert, self.cert_pem.as_bytes());
    }
}

/// Writes `bytes` to `path` through a temporary file renamed into place.
pub fn write_replacing(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).unwrap_or_else(|e| panic!("writing {}: {e}", tmp.display()));
    std::fs::rename(&tmp, path).unwrap_or_else(|e| panic!("renaming to {}: {e}", path.display()));
}

impl TestCa {
    /// A new CA with its own key.
    pub fn new() -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "posbridge test CA");
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-signing the CA");
        TestCa { cert, key }
    }

    /// The CA certificate (PEM), for clients to trust.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for `127.0.0.1` and `localhost` with common name `cn` and a fresh
    /// key, signed by this CA.
    pub fn issue(&self, cn: &str) -> HostCert {
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .expect("host certificate parameters");
        params.distinguished_name.push(DnType::CommonName, cn);
        let key = KeyPair::generate().expect("host key");
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("signing the host certificate");
        HostCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

impl Default for TestCa {
    fn default() -> Self {
        TestCa::new()
    }
}

/// A rustls client configuration trusting only the CA certificate `ca_pem`.
pub fn client_config(ca_pem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots
            .add(cert.expect("CA PEM"))
            .expect("adding the CA to the roots");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// Connects to `addr` (`127.0.0.1:PORT`) over TLS trusting `ca_pem` and returns the
/// certificate (DER) the host presented; the error says why the handshake failed.
pub async fn presented_certificate(addr: &str, ca_pem: &str) -> Result<Vec<u8>, String> {
    let connector = tokio_rustls::TlsConnector::from(client_config(ca_pem));
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connecting to {addr}: {e}"))?;
    let name = ServerName::try_from("127.0.0.1").map_err(|e| e.to_string())?;
    let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
        .await
        .map_err(|_| format!("TLS handshake with {addr} timed out"))?
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    let (_, session) = tls.get_ref();
    session
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| cert.to_vec())
        .ok_or_else(|| "the host presented no certificate".to_owned())
}
