//! The TLS settings of the HTTP client every check shares: the system's root certificates, as
//! reqwest's own default (rustls-platform-verifier) trusts them, but read at the first HTTPS
//! handshake rather than when the client is built.
//!
//! Reading and parsing `/etc/ssl/certs` (a bundle and a directory of a hundred files) cost about
//! 6 ms of CPU per run (`perf record` over `cutover rollback`), on a machine of two cores that
//! the run shares with Docker, Caddy and the apps it switches, while a promote or rollback of
//! the demo stack only speaks plain HTTP. The verification itself is the platform verifier's,
//! unchanged: this only decides when it is made.

use std::sync::{Arc, OnceLock};

use rustls::{
    ClientConfig, DigitallySignedStruct, Error, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime},
};
use rustls_platform_verifier::Verifier;

/// A client TLS config that trusts the system's roots, read at the first handshake. (A check
/// that trusts another root too, `ca`, is built by reqwest's own setup: it reads them at once.)
pub fn config() -> Result<ClientConfig, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(SystemRootsOnFirstUse {
        provider: Arc::clone(&provider),
        verifier: OnceLock::new(),
    });
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS settings: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    // What reqwest offers itself when built without HTTP/2, as cutover is.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The platform verifier over the system's roots, made at the first certificate to verify.
#[derive(Debug)]
struct SystemRootsOnFirstUse {
    provider: Arc<CryptoProvider>,
    verifier: OnceLock<Result<Verifier, Error>>,
}

impl SystemRootsOnFirstUse {
    fn verifier(&self) -> Result<&Verifier, Error> {
        self.verifier
            .get_or_init(|| Verifier::new(Arc::clone(&self.provider)))
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for SystemRootsOnFirstUse {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        self.verifier()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verifier()?.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verifier()?.verify_tls13_signature(message, cert, dss)
    }

    /// The provider's schemes, as the platform verifier's are, without reading the roots: rustls
    /// asks for these before the server has sent a certificate.
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lazy_verifier_offers_the_platform_verifiers_schemes() {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let lazy = SystemRootsOnFirstUse {
            provider: Arc::clone(&provider),
            verifier: OnceLock::new(),
        };
        let eager = Verifier::new(provider).unwrap();
        assert_eq!(
            lazy.supported_verify_schemes(),
            eager.supported_verify_schemes()
        );
        // Asking for them read no roots.
        assert!(lazy.verifier.get().is_none());
    }
}
