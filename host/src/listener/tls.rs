//! TLS for https and wss without a proxy: the certificate and key PEM files named by
//! `--tls-cert` / `--tls-key`, the rustls server configuration, and their reload.
//!
//! The pair is read at start (a missing, unreadable or mismatched pair refuses to start)
//! and again whenever either file changes on disk (polled every [`RELOAD_POLL`]) or the
//! process receives SIGHUP. A reload that fails (half-written file, key of another
//! certificate) is logged and the pair in use stays: a renewal gone wrong must not take
//! the tills off the air. New handshakes see the new pair at once through
//! [`CertResolver`], which rustls asks for the certificate on every handshake; open
//! connections keep the one they negotiated.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_util::sync::CancellationToken;

/// How often the certificate and key files are checked for a change. Renewals happen
/// weeks apart; a few seconds is prompt enough and costs two `stat` calls.
pub(crate) const RELOAD_POLL: Duration = Duration::from_secs(2);

/// The TLS settings (`--tls-cert`, `--tls-key`); without them the host serves plain
/// http and ws, as it should behind a proxy that terminates TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq, clap::Args)]
pub struct TlsOptions {
    /// PEM file with the server certificate, then any intermediates (a full chain, as
    /// ACME clients write it). With `--tls-key`, the host serves https and wss itself;
    /// the pair is reloaded when either file changes or on SIGHUP. Default none: plain
    /// http, for a host behind a proxy that terminates TLS.
    #[arg(
        long = "tls-cert",
        env = "POSBRIDGE_TLS_CERT",
        value_hint = clap::ValueHint::FilePath
    )]
    pub tls_cert: Option<PathBuf>,
    /// PEM file with the private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1). Keep it
    /// readable by the service's user only.
    #[arg(
        long = "tls-key",
        env = "POSBRIDGE_TLS_KEY",
        value_hint = clap::ValueHint::FilePath
    )]
    pub tls_key: Option<PathBuf>,
}

/// Why a certificate/key pair cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {what} {path}: {reason}")]
    Read {
        /// `TLS certificate` or `TLS key`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What the OS said.
        reason: std::io::Error,
    },
    /// The certificate file holds no usable PEM certificate.
    #[error("TLS certificate {path} holds no PEM certificate ({reason})")]
    NoCertificate {
        /// The file.
        path: PathBuf,
        /// Why parsing stopped, or "empty".
        reason: String,
    },
    /// The key file holds no usable PEM private key.
    #[error("TLS key {path} holds no PEM private key ({reason})")]
    NoKey {
        /// The file.
        path: PathBuf,
        /// Why parsing stopped.
        reason: String,
    },
    /// The key is not one rustls can sign with, or is not the certificate's.
    #[error("TLS key {key} does not fit certificate {cert}: {reason}")]
    Mismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said.
        reason: rustls::Error,
    },
    /// One of the pair is named without the other (checked here rather than by clap,
    /// so a pair split between the command line, the environment and the config file
    /// is judged as a whole).
    #[error("{given} is set but {missing} is not: TLS needs both (or neither, for plain http)")]
    Incomplete {
        /// The setting given.
        given: &'static str,
        /// The setting missing.
        missing: &'static str,
    },
    /// The server configuration could not be built (a protocol version the provider
    /// lacks; not expected with the built-in provider).
    #[error("TLS configuration: {0}")]
    Config(rustls::Error),
}

/// The cryptography in use: ring, which builds with nothing but a C compiler.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate/key pair read from its files.
fn load_pair(cert: &Path, key: &Path, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|reason| TlsError::Read {
        what: "TLS certificate",
        path: cert.to_owned(),
        reason,
    })?;
    let key_pem = std::fs::read(key).map_err(|reason| TlsError::Read {
        what: "TLS key",
        path: key.to_owned(),
        reason,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|err| TlsError::NoCertificate {
            path: cert.to_owned(),
            reason: err.to_string(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert.to_owned(),
            reason: "no CERTIFICATE block".to_owned(),
        });
    }
    let private_key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|err| TlsError::NoKey {
        path: key.to_owned(),
        reason: err.to_string(),
    })?;
    let mismatch = |reason| TlsError::Mismatch {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason,
    };
    let pair = CertifiedKey::from_der(chain, private_key, provider).map_err(mismatch)?;
    // `from_der` lets a pair whose consistency it cannot tell through; the host can,
    // for every key type ring signs with, so an unknown answer is refused too.
    pair.keys_match().map_err(mismatch)?;
    Ok(pair)
}

/// Hands rustls the pair in use on every handshake; a reload swaps it.
pub(super) struct CertResolver {
    current: ArcSwap<CertifiedKey>,
}

impl fmt::Debug for CertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CertResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for CertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The TLS side of the listener: the acceptor new connections handshake with, and the
/// files its certificate comes from.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    resolver: Arc<CertResolver>,
    provider: Arc<CryptoProvider>,
    cert: PathBuf,
    key: PathBuf,
    /// The files' state just before the pair in use was read: a change after that, even
    /// one made while the host was still starting, is seen by the reloader.
    loaded: FilesState,
}

/// Size, modification time and inode of the certificate and key files.
type FilesState = [Option<(u64, SystemTime, u64)>; 2];

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// Reads the pair the options name; `None` when TLS is off.
    pub(crate) fn load(options: &TlsOptions) -> Result<Option<Tls>, TlsError> {
        let (cert, key) = match (&options.tls_cert, &options.tls_key) {
            (Some(cert), Some(key)) => (cert, key),
            (None, None) => return Ok(None),
            (Some(_), None) => {
                return Err(TlsError::Incomplete {
                    given: "tls-cert",
                    missing: "tls-key",
                })
            }
            (None, Some(_)) => {
                return Err(TlsError::Incomplete {
                    given: "tls-key",
                    missing: "tls-cert",
                })
            }
        };
        let provider = provider();
        let loaded = files_state(cert, key);
        let pair = load_pair(cert, key, &provider)?;
        let resolver = Arc::new(CertResolver {
            current: ArcSwap::from_pointee(pair),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Config)?
            .with_no_client_auth()
            .with_cert_resolver(resolver.clone());
        // HTTP/1.1 only: the event stream's WebSocket upgrade is an HTTP/1.1 handshake,
        // and a till gains nothing from HTTP/2 on its one connection.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Some(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            resolver,
            provider,
            cert: cert.clone(),
            key: key.clone(),
            loaded,
        }))
    }

    /// TLS over `tcp` once the handshake completes within `timeout` (`None`, counted in
    /// `posbridge_tls_handshake_failures_total`, if it fails or runs out).
    pub(crate) async fn handshake(
        &self,
        tcp: tokio::net::TcpStream,
        timeout: Duration,
        peer: std::net::SocketAddr,
    ) -> Option<super::ConnStream> {
        match tokio::time::timeout(timeout, self.acceptor.accept(tcp)).await {
            Ok(Ok(stream)) => Some(super::ConnStream::Tls(Box::new(stream))),
            Ok(Err(err)) => {
                metrics::counter!("posbridge_tls_handshake_failures_total", "reason" => "error")
                    .increment(1);
                tracing::debug!(%peer, error = %err, "TLS handshake failed");
                None
            }
            Err(_) => {
                metrics::counter!("posbridge_tls_handshake_failures_total", "reason" => "timeout")
                    .increment(1);
                tracing::debug!(%peer, "TLS handshake timed out");
                None
            }
        }
    }

    /// Reads the files again and, if they hold a good pair, serves it from the next
    /// handshake on; otherwise the pair in use stays and the error is returned.
    pub(crate) fn reload(&self) -> Result<(), TlsError> {
        let pair = load_pair(&self.cert, &self.key, &self.provider)?;
        self.resolver.current.store(Arc::new(pair));
        Ok(())
    }

    /// Reloads the pair on SIGHUP and whenever a file changes, until `shutdown`.
    pub(crate) fn spawn_reloader(&self, shutdown: CancellationToken) {
        let tls = self.clone();
        // Registered before returning, so a SIGHUP sent once the host says it listens is
        // never the default "terminate".
        let mut hangup = hangup_signal();
        tokio::spawn(async move {
            let mut seen = tls.loaded;
            // The state whose reload failed and was reported: the files are read again
            // on every poll (a half-written pair may complete without a further change
            // of metadata), but the same failure is logged once.
            let mut reported: Option<FilesState> = None;
            let mut poll = tokio::time::interval(RELOAD_POLL);
            poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let signalled = tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = poll.tick() => false,
                    Some(()) = recv(&mut hangup) => true,
                };
                let state = files_state(&tls.cert, &tls.key);
                let failing = reported.is_some();
                if !signalled && state == seen && !failing {
                    continue;
                }
                match tls.reload() {
                    Ok(()) => {
                        let why = if signalled { "SIGHUP" } else { "file change" };
                        tracing::info!(cert = %tls.cert.display(), why, "TLS certificate reloaded");
                        seen = state;
                        reported = None;
                    }
                    Err(err) => {
                        if signalled || reported.as_ref() != Some(&state) {
                            tracing::warn!(error = %err, "TLS certificate reload failed; the certificate in use stays");
                        }
                        seen = state;
                        reported = Some(state);
                    }
                }
            }
        });
    }
}

/// What identifies the files' current contents: size, modification time and inode of
/// each (a renewal usually renames a new file into place, which changes the inode even
/// within one clock tick).
fn files_state(cert: &Path, key: &Path) -> FilesState {
    [cert, key].map(|path| {
        let meta = std::fs::metadata(path).ok()?;
        #[cfg(unix)]
        let inode = std::os::unix::fs::MetadataExt::ino(&meta);
        #[cfg(not(unix))]
        let inode = 0;
        Some((meta.len(), meta.modified().ok()?, inode))
    })
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

fn hangup_signal() -> Hangup {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(err) => {
                tracing::warn!(error = %err, "cannot watch SIGHUP; the TLS pair reloads on file change only");
                None
            }
        }
    }
    #[cfg(not(unix))]
    None
}

/// The next SIGHUP; never, when it cannot be watched.
async fn recv(hangup: &mut Hangup) -> Option<()> {
    #[cfg(unix)]
    if let Some(signal) = hangup {
        return signal.recv().await;
    }
    #[cfg(not(unix))]
    let _ = hangup;
    std::future::pending().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_pair_is_plain_http_and_half_a_pair_is_refused() {
        assert!(matches!(Tls::load(&TlsOptions::default()), Ok(None)));
        let only_cert = TlsOptions {
            tls_cert: Some(PathBuf::from("c.pem")),
            tls_key: None,
        };
        let err = Tls::load(&only_cert).unwrap_err().to_string();
        assert!(err.contains("tls-cert is set but tls-key is not"), "{err}");
        let only_key = TlsOptions {
            tls_cert: None,
            tls_key: Some(PathBuf::from("k.pem")),
        };
        let err = Tls::load(&only_key).unwrap_err().to_string();
        assert!(err.contains("tls-key is set but tls-cert is not"), "{err}");
    }

    #[test]
    fn files_that_are_not_pem_are_named_in_the_error() {
        let dir = std::env::temp_dir().join(format!("posbridge-tls-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let cert = dir.join("c.pem");
        let key = dir.join("k.pem");
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem either").unwrap();
        let err = load_pair(&cert, &key, &provider()).unwrap_err();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        assert!(err.to_string().contains("c.pem"), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
