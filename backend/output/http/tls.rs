//! TLS client configuration with libcurl's two separate checks:
//! `verify_peer` (the chain leads to a trusted root and the certificate is
//! in date) and `verify_host` (the certificate names the host). libcurl
//! documents them as independent, so each combination behaves as there:
//! a self-signed certificate is accepted with `verify_peer` off as long as
//! its name fits, and any name is accepted with `verify_host` off.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, Error, RootCertStore, SignatureScheme};

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TlsSettings {
    pub verify_peer: bool,
    pub verify_host: bool,
    /// PEM bundle that replaces the system roots.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain); the key may be in the same file.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

impl Default for TlsSettings {
    fn default() -> Self {
        TlsSettings {
            verify_peer: true,
            verify_host: true,
            ca_file: None,
            client_cert: None,
            client_key: None,
        }
    }
}

/// Why a TLS configuration could not be built, in libcurl's terms.
#[derive(Debug)]
pub enum TlsSetupError {
    CaFile(String),
    ClientCert(String),
}

fn provider() -> Arc<CryptoProvider> {
    // Explicit, so that another crate enabling a second provider in the
    // build cannot make rustls' process-wide default ambiguous.
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The system's roots, read once: `/etc/ssl/certs` does not change under a
/// running service often enough to justify reading it per request.
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let mut store = RootCertStore::empty();
            let found = rustls_native_certs::load_native_certs();
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "loaded the system's TLS roots");
            Arc::new(store)
        })
        .clone()
}

fn roots_from(path: &Path) -> Result<Arc<RootCertStore>, TlsSetupError> {
    let what = |e: &dyn std::fmt::Display| {
        TlsSetupError::CaFile(format!("cannot read CA file {}: {e}", path.display()))
    };
    let mut store = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| what(&e))? {
        store
            .add(cert.map_err(|e| what(&e))?)
            .map_err(|e| what(&e))?;
    }
    if store.is_empty() {
        return Err(what(&"no certificate in it"));
    }
    Ok(Arc::new(store))
}

fn client_identity(
    cert: &Path,
    key: Option<&Path>,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsSetupError> {
    let bad = |path: &Path, e: &dyn std::fmt::Display| {
        TlsSetupError::ClientCert(format!("cannot read {}: {e}", path.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| bad(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(cert, &e))?;
    if chain.is_empty() {
        return Err(bad(cert, &"no certificate in it"));
    }
    let key_path = key.unwrap_or(cert);
    let key = PrivateKeyDer::from_pem_file(key_path).map_err(|e| bad(key_path, &e))?;
    Ok((chain, key))
}

pub fn client_config(settings: &TlsSettings) -> Result<rustls::ClientConfig, TlsSetupError> {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::CaFile(e.to_string()))?;
    let verifier: Arc<dyn ServerCertVerifier> = if settings.verify_peer {
        // Roots are read only when used: libcurl ignores CAINFO when the
        // peer is not verified.
        let roots = match &settings.ca_file {
            Some(path) => roots_from(path)?,
            None => system_roots(),
        };
        let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|e| TlsSetupError::CaFile(e.to_string()))?;
        if settings.verify_host {
            webpki
        } else {
            Arc::new(AnyName { webpki })
        }
    } else {
        Arc::new(Untrusted {
            provider: provider.clone(),
            verify_host: settings.verify_host,
        })
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &settings.client_cert {
        Some(cert) => {
            let (chain, key) = client_identity(cert, settings.client_key.as_deref())?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsSetupError::ClientCert(e.to_string()))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Chain checked, name not checked (`verify_host` off).
#[derive(Debug)]
struct AnyName {
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Chain not checked (`verify_peer` off); the name still is unless
/// `verify_host` is off too. The handshake signatures are always checked,
/// so the server must hold the key of the certificate it shows.
#[derive(Debug)]
struct Untrusted {
    provider: Arc<CryptoProvider>,
    verify_host: bool,
}

impl ServerCertVerifier for Untrusted {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        if self.verify_host {
            let cert = webpki::EndEntityCert::try_from(end_entity)
                .map_err(|_| Error::InvalidCertificate(CertificateError::BadEncoding))?;
            cert.verify_is_valid_for_subject_name(server_name)
                .map_err(|_| Error::InvalidCertificate(CertificateError::NotValidForName))?;
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
