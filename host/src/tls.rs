//! HTTPS: the server's certificate, read from PEM files and swapped in
//! place when they are read again.
//!
//! One [`Certificate`] serves every worker. A handshake takes whatever key
//! is current when it starts, so reading the files again (SIGHUP) changes
//! the certificate for new connections and leaves open ones as they are.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, crypto};

use crate::config::TlsFiles;

/// ALPN protocols offered, in order of preference.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// The certificate new handshakes present, replaceable while serving.
#[derive(Debug)]
pub struct Certificate {
    current: ArcSwap<CertifiedKey>,
}

impl Certificate {
    /// Reads the certificate chain and key in `files`. The error is one line
    /// naming the file and what is wrong with it.
    pub fn load(files: &TlsFiles) -> Result<Arc<Self>, String> {
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(read(files)?),
        }))
    }

    /// Presents `key` (from [`read`]) from the next handshake on;
    /// connections already open keep theirs.
    pub fn replace(&self, key: CertifiedKey) {
        self.current.store(Arc::new(key));
        tracing::info!("TLS certificate reloaded");
    }

    /// An acceptor for the server's connections: TLS 1.2 and 1.3, HTTP/2 or
    /// HTTP/1.1 by ALPN.
    pub fn acceptor(self: &Arc<Self>) -> TlsAcceptor {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        TlsAcceptor::from(Arc::new(config))
    }
}

impl ResolvesServerCert for Certificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

fn provider() -> Arc<crypto::CryptoProvider> {
    Arc::new(crypto::ring::default_provider())
}

/// The chain and key in `files`, checked to belong together. The error is
/// one line naming the file and what is wrong with it.
pub fn read(files: &TlsFiles) -> Result<CertifiedKey, String> {
    let chain = read_chain(&files.cert)?;
    let key = PrivateKeyDer::from_pem_file(&files.key).map_err(|e| {
        format!(
            "server.tls: {}: {}",
            files.key.display(),
            pem_error(e, "private key")
        )
    })?;
    let key = CertifiedKey::from_der(chain, key, &provider()).map_err(|e| match e {
        rustls::Error::InconsistentKeys(_) => format!(
            "server.tls: the key in {} does not belong to the certificate in {}",
            files.key.display(),
            files.cert.display()
        ),
        e => format!("server.tls: {}: {e}", files.key.display()),
    })?;
    Ok(key)
}

fn read_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let fail = |e| {
        format!(
            "server.tls: {}: {}",
            path.display(),
            pem_error(e, "certificate")
        )
    };
    let chain = CertificateDer::pem_file_iter(path)
        .map_err(fail)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(fail)?;
    if chain.is_empty() {
        return Err(format!(
            "server.tls: {}: no PEM certificate in the file",
            path.display()
        ));
    }
    Ok(chain)
}

fn pem_error(e: rustls::pki_types::pem::Error, what: &str) -> String {
    use rustls::pki_types::pem::Error;
    match e {
        Error::Io(e) => e.to_string(),
        Error::NoItemsFound => format!("no PEM {what} in the file"),
        e => format!("not a PEM {what}: {e}"),
    }
}
