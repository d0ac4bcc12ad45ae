//! Outbound HTTP: the one way a talon binary makes an HTTP client. HTTPS
//! goes through rustls with ring and the system's trust store (the image
//! carries a CA bundle; `SSL_CERT_FILE` names another).

/// A client builder whose TLS is ready: installs ring as the process's
/// rustls provider first (once; later calls find it installed).
pub fn client_builder() -> reqwest::ClientBuilder {
    // Err only when a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
}

/// A client with reqwest's defaults over [`client_builder`].
#[expect(
    clippy::expect_used,
    reason = "the default settings cannot fail to build"
)]
pub fn client() -> reqwest::Client {
    client_builder()
        .build()
        .expect("an HTTP client with the built-in settings always builds")
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_client_builds_and_takes_https_urls() {
        let client = super::client();
        let request = client.get("https://example.invalid/").build();
        assert!(request.is_ok(), "{request:?}");
    }
}
