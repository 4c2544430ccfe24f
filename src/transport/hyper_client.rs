//! [`HttpTransport`], the default transport (feature `client`): hyper-util's
//! pooled HTTP/1.1 client with the settings a login needs (every handshake
//! step is a small request waiting for a small answer), and HTTPS through
//! rustls with feature `rustls`.

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

#[cfg(feature = "rustls")]
use super::tls::{self, TlsError};

#[cfg(feature = "rustls")]
type Connector = hyper_rustls::HttpsConnector<HttpConnector>;
#[cfg(not(feature = "rustls"))]
type Connector = HttpConnector;

/// The default transport: a pooled HTTP/1.1 client, `http://` and, with
/// feature `rustls`, `https://` (certificates verified against the Mozilla
/// roots and any CA added with [`HttpTransportBuilder::ca_file`]).
///
/// Made by [`http_transport`] or [`HttpTransportBuilder`]; cheap to clone
/// (clones share the connection pool).
#[derive(Clone)]
pub struct HttpTransport {
    client: Client<Connector, Full<Bytes>>,
}

impl fmt::Debug for HttpTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpTransport")
            .field("tls", &cfg!(feature = "rustls"))
            .finish_non_exhaustive()
    }
}

impl Service<Request<Full<Bytes>>> for HttpTransport {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.client.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Full<Bytes>>) -> Self::Future {
        self.client.call(request)
    }
}

/// The default transport with default settings.
pub fn http_transport() -> HttpTransport {
    HttpTransportBuilder::new().build()
}

/// Settings of the default transport.
///
/// ```
/// use std::time::Duration;
/// use bosh_prebind::transport::HttpTransportBuilder;
///
/// let transport = HttpTransportBuilder::new()
///     .connect_timeout(Duration::from_secs(2))
///     .build();
/// ```
///
/// To bring your own TLS stack (another crypto provider, client
/// certificates, a proxy), wrap [`connector`](Self::connector), which keeps
/// this crate's TCP settings, and pass the client to
/// [`PrebindLayer::with_transport`](crate::PrebindLayer::with_transport).
#[derive(Clone)]
#[must_use]
pub struct HttpTransportBuilder {
    connect_timeout: Duration,
    pool_idle_timeout: Duration,
    #[cfg(feature = "rustls")]
    extra_cas: Vec<rustls::pki_types::CertificateDer<'static>>,
    #[cfg(feature = "rustls")]
    tls_config: Option<rustls::ClientConfig>,
}

impl fmt::Debug for HttpTransportBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = f.debug_struct("HttpTransportBuilder");
        s.field("connect_timeout", &self.connect_timeout)
            .field("pool_idle_timeout", &self.pool_idle_timeout);
        #[cfg(feature = "rustls")]
        s.field("extra_cas", &self.extra_cas.len())
            .field("custom_tls_config", &self.tls_config.is_some());
        s.finish()
    }
}

impl Default for HttpTransportBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpTransportBuilder {
    /// Defaults: 5 s to connect, idle connections kept 30 s, `TCP_NODELAY`.
    pub fn new() -> Self {
        HttpTransportBuilder {
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(30),
            #[cfg(feature = "rustls")]
            extra_cas: Vec::new(),
            #[cfg(feature = "rustls")]
            tls_config: None,
        }
    }

    /// How long a TCP connect may take.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long an idle pooled connection is kept (keep it below the CM's
    /// own keep-alive timeout).
    pub fn pool_idle_timeout(mut self, timeout: Duration) -> Self {
        self.pool_idle_timeout = timeout;
        self
    }

    /// The tuned TCP connector (`TCP_NODELAY`, connect timeout, any scheme
    /// allowed so a TLS wrapper can use it), for building your own client.
    pub fn connector(&self) -> HttpConnector {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(self.connect_timeout));
        connector.enforce_http(false);
        connector
    }

    /// Also trusts the CA certificates in a PEM file (a self-hosted CM with a
    /// private CA). The public roots stay trusted.
    #[cfg(feature = "rustls")]
    pub fn ca_file(mut self, path: impl AsRef<std::path::Path>) -> Result<Self, TlsError> {
        self.extra_cas.extend(tls::read_ca_file(path.as_ref())?);
        Ok(self)
    }

    /// Also trusts the CA certificates in PEM text.
    #[cfg(feature = "rustls")]
    pub fn ca_pem(mut self, pem: &[u8]) -> Result<Self, TlsError> {
        self.extra_cas
            .extend(tls::parse_ca_pem(pem, "the PEM text")?);
        Ok(self)
    }

    /// Uses this rustls configuration instead (its roots replace the default
    /// ones and any CA added here). ALPN is set to HTTP/1.1.
    #[cfg(feature = "rustls")]
    pub fn tls_config(mut self, config: rustls::ClientConfig) -> Self {
        self.tls_config = Some(config);
        self
    }

    /// The transport.
    pub fn build(self) -> HttpTransport {
        let connector = self.connector();
        #[cfg(feature = "rustls")]
        let connector = {
            let config = self
                .tls_config
                .unwrap_or_else(|| tls::client_config(&self.extra_cas));
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(config)
                .https_or_http()
                .enable_http1()
                .wrap_connector(connector)
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(self.pool_idle_timeout)
            .build(connector);
        HttpTransport { client }
    }
}
