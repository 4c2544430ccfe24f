//! [`PrebindLayer`]: the configuration builder and `tower_layer::Layer` impl.

use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;
use http::request::Parts;
use tokio::sync::Semaphore;
use tower_layer::Layer;

use crate::html::snippet::valid_element_id;
use crate::middleware::cluster::{BoshNode, Cluster, ClusterError};
use crate::middleware::config::Config;
use crate::middleware::credentials_source::{CredentialsFn, CredentialsSource, FromExtensions};
use crate::middleware::pool::{PoolHandle, PoolLink, PoolShared};
use crate::middleware::service::Prebind;
use crate::protocol::credentials::Credentials;
use crate::protocol::credentials::normalize_domain;
use crate::protocol::scram_cache::ScramCache;

/// Adds XMPP pre-binding to a service: see the [crate docs](crate).
///
/// ```
/// # #[cfg(feature = "client")] {
/// use bosh_prebind::{Credentials, PrebindLayer};
/// use std::time::Duration;
///
/// let layer = PrebindLayer::new("http://127.0.0.1:5280/http-bind".parse().unwrap())
///     .credentials(Credentials::anonymous("anon.localhost"))
///     .public_bosh_url("/http-bind")
///     .handshake_timeout(Duration::from_secs(5));
/// # }
/// ```
#[derive(Clone)]
#[must_use = "a layer does nothing until it wraps a service"]
pub struct PrebindLayer<T> {
    config: Arc<Config>,
    transport: T,
}

impl<T> fmt::Debug for PrebindLayer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrebindLayer")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "client")]
impl PrebindLayer<crate::transport::HttpTransport> {
    /// A layer that pre-binds sessions at the connection manager at
    /// `bosh_url` (e.g. `http://127.0.0.1:5280/http-bind` or
    /// `https://xmpp.example.org/bosh`) through the default transport
    /// ([`http_transport`](crate::http_transport)). An `https://` URL needs
    /// the `rustls` feature (on by default): without it, parsing the
    /// [`BoshUrl`](crate::transport::BoshUrl) fails and says so. To trust a
    /// private CA, build the transport with
    /// [`HttpTransportBuilder`](crate::transport::HttpTransportBuilder) and use
    /// [`with_transport`](Self::with_transport).
    ///
    /// Nobody is logged in until a credentials source is set.
    pub fn new(bosh_url: crate::transport::BoshUrl) -> Self {
        Self::with_transport(bosh_url.into(), crate::transport::http_transport())
    }

    /// A layer that pre-binds at several connection managers, the nodes of
    /// one cluster with no load balancer in front (with one, use
    /// [`new`](Self::new) with its URL). Each prebind goes to the next
    /// healthy node, round-robin; a node that cannot be reached is skipped
    /// for a back-off ([`node_backoff`](Self::node_backoff)) and the prebind
    /// is made at another node. Each session's `bosh_service_url` names the
    /// node that made it: its [`BoshNode::public_url`], or with
    /// [`bosh_passthrough("/http-bind")`](Self::bosh_passthrough) the path
    /// `/http-bind/{index}` (index in this list), which forwards to it.
    ///
    /// ```
    /// use bosh_prebind::{BoshNode, Credentials, PrebindLayer};
    ///
    /// # fn layer() -> Result<(), Box<dyn std::error::Error>> {
    /// let layer = PrebindLayer::new_cluster([
    ///     "http://10.0.0.1:5280/http-bind".parse::<bosh_prebind::BoshUrl>()?,
    ///     "http://10.0.0.2:5280/http-bind".parse()?,
    /// ])?
    /// .credentials(Credentials::anonymous("anon.example.org"))
    /// .bosh_passthrough("/http-bind"); // sessions: /http-bind/0 or /http-bind/1
    ///
    /// // Or browsers reach each node directly:
    /// let layer = PrebindLayer::new_cluster([
    ///     BoshNode::new("http://10.0.0.1:5280/http-bind".parse::<bosh_prebind::BoshUrl>()?)
    ///         .public_url("https://xmpp-1.example.org/http-bind"),
    ///     BoshNode::new("http://10.0.0.2:5280/http-bind".parse::<bosh_prebind::BoshUrl>()?)
    ///         .public_url("https://xmpp-2.example.org/http-bind"),
    /// ])?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    ///
    /// An empty list, a URL listed twice, or one without a scheme and host.
    pub fn new_cluster<I>(nodes: I) -> Result<Self, ClusterError>
    where
        I: IntoIterator<Item: Into<BoshNode>>,
    {
        Self::cluster_with_transport(nodes, crate::transport::http_transport())
    }
}

impl<T> PrebindLayer<T> {
    /// A layer that sends its BOSH requests through `transport`, any
    /// `Service<http::Request<Full<Bytes>>>` (see [`BoshTransport`](crate::BoshTransport)).
    pub fn with_transport(bosh_url: Uri, transport: T) -> Self {
        PrebindLayer {
            config: Arc::new(Config::new(Cluster::single(bosh_url))),
            transport,
        }
    }

    /// [`new_cluster`](PrebindLayer::new_cluster) with your own transport,
    /// which gets requests for every node (their URIs name the node).
    ///
    /// # Errors
    ///
    /// An empty list, a URL listed twice, or one without a scheme and host.
    pub fn cluster_with_transport<I>(nodes: I, transport: T) -> Result<Self, ClusterError>
    where
        I: IntoIterator<Item: Into<BoshNode>>,
    {
        let cluster = Cluster::new(nodes.into_iter().map(Into::into).collect())?;
        Ok(PrebindLayer {
            config: Arc::new(Config::new(cluster)),
            transport,
        })
    }

    /// Replaces the transport.
    pub fn transport<U>(self, transport: U) -> PrebindLayer<U> {
        PrebindLayer {
            config: self.config,
            transport,
        }
    }

    fn config(&mut self) -> &mut Config {
        Arc::make_mut(&mut self.config)
    }

    /// The path of the prebind endpoint (default `/prebind`).
    pub fn prebind_path(mut self, path: impl Into<String>) -> Self {
        self.config().prebind_path = path.into();
        self
    }

    /// Who logs in, per request: a fixed [`Credentials`](crate::Credentials),
    /// [`FromExtensions`], or any [`CredentialsSource`]. The domains a fixed
    /// source uses are allowed automatically.
    pub fn credentials(mut self, source: impl CredentialsSource) -> Self {
        for domain in source.static_domains() {
            self = self.allow_domain(domain);
        }
        // Only a fixed identity can be pooled (see `pool`).
        let fixed = (&source as &dyn Any).downcast_ref::<Credentials>().cloned();
        let config = self.config();
        config.pool_credentials = fixed;
        config.credentials = Arc::new(source);
        self
    }

    /// Reads the [`Credentials`](crate::Credentials) that the application's
    /// own middleware put into the request extensions. Allow their domains
    /// with [`allow_domain`](Self::allow_domain).
    pub fn credentials_from_extensions(self) -> Self {
        self.credentials(FromExtensions)
    }

    /// Reads the [`Credentials`](crate::Credentials) that the application's
    /// own middleware put into the request extensions, and logs guests (no
    /// credentials there) in anonymously on `domain`, which is allowed
    /// automatically. The domains of your users must be allowed with
    /// [`allow_domain`](Self::allow_domain). Same as
    /// `.credentials(FromExtensions.or_anonymous(domain))`.
    pub fn credentials_from_extensions_or_anonymous(self, domain: impl AsRef<str>) -> Self {
        self.credentials(FromExtensions.or_anonymous(domain))
    }

    /// Decides per request with an async closure given the request head.
    ///
    /// ```
    /// # #[cfg(feature = "client")] {
    /// use bosh_prebind::{Credentials, PrebindLayer};
    ///
    /// let layer = PrebindLayer::new("http://127.0.0.1:5280/http-bind".parse().unwrap())
    ///     .allow_domain("localhost")
    ///     .credentials_fn(|head: &http::request::Parts| {
    ///         let user = head.headers.get("x-user").and_then(|v| v.to_str().ok()).map(str::to_owned);
    ///         async move {
    ///             let user = user?;
    ///             Credentials::account(format!("{user}@localhost"), "from-your-vault").ok()
    ///         }
    ///     });
    /// # }
    /// ```
    pub fn credentials_fn<F, Fut>(self, f: F) -> Self
    where
        F: Fn(&http::request::Parts) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = Option<crate::Credentials>> + Send + 'static,
    {
        self.credentials(CredentialsFn(f))
    }

    /// Allows sessions on `domain` (the allow-list: no open relay). Compared
    /// case-insensitively, a trailing dot ignored.
    pub fn allow_domain(mut self, domain: impl AsRef<str>) -> Self {
        let domain = normalize_domain(domain.as_ref());
        if !self.config.is_allowed(&domain) {
            self.config().allowed_domains.push(domain);
        }
        self
    }

    /// The BOSH URL handed to browsers in JSON answers and injected snippets
    /// (default: the CM URL itself). Set it when browsers reach the CM by
    /// another address, such as a same-origin path behind your proxy.
    pub fn public_bosh_url(mut self, url: impl Into<String>) -> Self {
        let config = self.config();
        config.public_bosh_url = url.into();
        config.public_bosh_url_set = true;
        config.refresh_browser_urls();
        self
    }

    /// Forwards BOSH requests POSTed to `path` (e.g. `/http-bind`) to the
    /// connection manager, so pages attach on their own origin with no CORS
    /// set-up. Only that exact path, only POST, only to the configured CM;
    /// held requests allowed up to `max_wait` plus the request timeout.
    /// Answers are streamed as they arrive, whatever their size (see
    /// [`bosh_passthrough_max_response_body`](Self::bosh_passthrough_max_response_body));
    /// request bodies are capped by
    /// [`bosh_passthrough_max_request_body`](Self::bosh_passthrough_max_request_body).
    /// Browsers are told to use `path` unless
    /// [`public_bosh_url`](Self::public_bosh_url) says otherwise. With
    /// several nodes ([`new_cluster`](Self::new_cluster)), `path/0`,
    /// `path/1`, … forward to each node and sessions name their node's path
    /// (a session lives on the node that made it); `path` itself forwards to
    /// the first node that is up, which suits clusters whose nodes forward
    /// to each other (ejabberd), not separate servers.
    pub fn bosh_passthrough(mut self, path: impl Into<String>) -> Self {
        let path = path.into();
        let config = self.config();
        if !config.public_bosh_url_set {
            config.public_bosh_url.clone_from(&path);
        }
        config.passthrough_path = Some(path);
        config.refresh_browser_urls();
        self
    }

    /// Largest request body the pass-through reads from a browser (default
    /// 1 MiB: a vCard photo upload is a few hundred KiB; stay below the CM's
    /// own limit, Prosody's `c2s_stanza_size_limit`).
    pub fn bosh_passthrough_max_request_body(mut self, bytes: usize) -> Self {
        self.config().passthrough.max_request_body = bytes;
        self
    }

    /// Largest answer the pass-through streams from the CM (default: no
    /// cap, the CM is yours). Beyond it the response is aborted.
    pub fn bosh_passthrough_max_response_body(mut self, bytes: Option<u64>) -> Self {
        self.config().passthrough.max_response_body = bytes;
        self
    }

    /// Tells the CM who the browser is, as `X-Forwarded-For` on pass-through
    /// requests (appended to one a proxy in front already set), so its per-IP
    /// limits and logs see the browser (Prosody: `trusted_proxies`). `f`
    /// finds the address in the request head, e.g. axum's `ConnectInfo`.
    pub fn bosh_passthrough_forwarded_for<F>(mut self, f: F) -> Self
    where
        F: Fn(&Parts) -> Option<std::net::IpAddr> + Send + Sync + 'static,
    {
        self.config().passthrough.client_ip = Some(Arc::new(f));
        self
    }

    /// `wait` asked for when the client does not say (default 59: Converse.js
    /// attaches with 59).
    pub fn default_wait(mut self, seconds: u32) -> Self {
        self.config().default_wait = seconds.max(1);
        self
    }

    /// Renamed [`default_wait`](Self::default_wait): this sets a value, it
    /// does not wait.
    #[deprecated(since = "0.2.0", note = "use `default_wait`")]
    pub fn wait(self, seconds: u32) -> Self {
        self.default_wait(seconds)
    }

    /// The largest `wait` a client may ask for (default 59).
    pub fn max_wait(mut self, seconds: u32) -> Self {
        self.config().max_wait = seconds.max(1);
        self
    }

    /// The largest `hold` a client may ask for (default 1).
    pub fn max_hold(mut self, hold: u32) -> Self {
        self.config().max_hold = hold.max(1);
        self
    }

    /// `xml:lang` of pre-bound streams (default `en`).
    pub fn lang(mut self, lang: impl Into<String>) -> Self {
        self.config().lang = lang.into();
        self
    }

    /// A `route` attribute for CMs in front of several servers (XEP-0124 §7.1).
    pub fn route(mut self, route: impl Into<String>) -> Self {
        self.config().route = Some(route.into());
        self
    }

    /// Timeout of each request to the CM (default 5 s).
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.config().client.request_timeout = timeout;
        self
    }

    /// Deadline of a whole handshake (default 10 s), retries at other nodes
    /// included.
    pub fn handshake_timeout(mut self, timeout: Duration) -> Self {
        self.config().client.handshake_timeout = timeout;
        self
    }

    /// How long a node that could not be reached is skipped (default 5 s,
    /// doubling per failure in a row up to 60 s; `Duration::ZERO` never
    /// skips). Only matters with several nodes.
    pub fn node_backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.config().cluster.set_backoff(initial, max);
        self
    }

    /// Largest prebind request body accepted (default 2 KiB).
    pub fn max_request_body(mut self, bytes: usize) -> Self {
        self.config().max_request_body = bytes;
        self
    }

    /// Largest CM response body accepted (default 64 KiB).
    pub fn max_response_body(mut self, bytes: usize) -> Self {
        self.config().client.max_response_body = bytes;
        self
    }

    /// How many handshakes may run at once (default 256). Beyond it the
    /// prebind path answers `503` with `Retry-After`, and pages get the error
    /// object instead of a session, so a flood cannot pile up on the CM.
    pub fn max_concurrent_handshakes(mut self, limit: usize) -> Self {
        // tokio's semaphore holds at most `MAX_PERMITS` (usize::MAX >> 3).
        let limit = limit.min(Semaphore::MAX_PERMITS);
        let config = self.config();
        config.handshakes = Arc::new(Semaphore::new(limit));
        config.max_handshakes = limit;
        self
    }

    /// Keeps up to `n` sessions bound ahead of demand (default 0: no pool),
    /// so `GET /prebind`, a `POST` with no `rid`, `wait` or `hold`, and
    /// injected pages take one with no round trip to the CM. Only for a
    /// fixed [`Credentials`](crate::Credentials) source (anonymous or one
    /// account); with a per-request source the pool is not used, since a
    /// session made ahead belongs to no user in particular.
    ///
    /// The size follows demand, up to `n`: about the requests of the last
    /// quarter of the CM's `inactivity`, none when the site is quiet. A
    /// session is handed out only while younger than half that
    /// `inactivity` (30 s assumed if the CM announces none), else it is
    /// terminated (XEP-0124 §12). Refills take permits of
    /// [`max_concurrent_handshakes`](Self::max_concurrent_handshakes) only
    /// when they are free, at most half of them (so a cap below 2 leaves
    /// no room for a pool). Started by the first request inside a tokio
    /// runtime; end it with [`pool_handle`](Self::pool_handle)`().shutdown()`.
    pub fn pool(mut self, n: usize) -> Self {
        self.config().pool = (n > 0).then(|| Arc::new(PoolLink(Arc::new(PoolShared::new(n)))));
        self
    }

    /// Watches the warm pool (counters: [`PoolHandle::stats`]) and ends it
    /// ([`PoolHandle::shutdown`] terminates every pooled session; call it on
    /// graceful shutdown). Take it after [`pool`](Self::pool); without a pool
    /// the handle reports zeros and its shutdown returns at once.
    pub fn pool_handle(&self) -> PoolHandle {
        PoolHandle::new(self.config.pool.as_ref().map(|link| Arc::clone(&link.0)))
    }

    /// How many SCRAM salted passwords to keep (default 1024; 0 turns the
    /// cache off). A cached login skips the PBKDF2 run, by far the largest
    /// CPU cost of a SCRAM prebind; see [`ScramCache`].
    pub fn scram_cache(mut self, capacity: usize) -> Self {
        self.config().client.scram_cache =
            (capacity > 0).then(|| Arc::new(ScramCache::new(capacity)));
        self
    }

    /// Uses this SCRAM cache, shared with other layers (and readable: its
    /// [`hits`](ScramCache::hits) and [`misses`](ScramCache::misses)).
    pub fn scram_cache_shared(mut self, cache: Arc<ScramCache>) -> Self {
        self.config().client.scram_cache = Some(cache);
        self
    }

    /// Runs SCRAM's PBKDF2 (up to
    /// [`MAX_SCRAM_ITERATIONS`](crate::handshake::MAX_SCRAM_ITERATIONS)
    /// HMACs, a few milliseconds at real servers' counts) on the request's
    /// own task instead of a blocking thread (default `false`:
    /// `tokio::task::spawn_blocking`, so a burst of cold logins never stalls
    /// the runtime's workers). Inline suits tests, benchmarks and
    /// current-thread runtimes that serve nothing else.
    pub fn derive_inline(mut self, inline: bool) -> Self {
        self.config().client.derive_inline = inline;
        self
    }

    /// How many SCRAM derivations may run at once on blocking threads
    /// (default: the number of cores; clamped to 1 ..= tokio's
    /// `Semaphore::MAX_PERMITS`). The others wait their turn without holding
    /// a thread: a burst of cold logins then takes as long as the CPU needs,
    /// and the runtime's workers keep their share.
    pub fn max_concurrent_derivations(mut self, limit: usize) -> Self {
        let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
        self.config().client.derivations = Arc::new(Semaphore::new(limit));
        self
    }

    /// Calls `hook` with the [`Outcome`](crate::Outcome) of every prebind:
    /// each request on the prebind path (refusals included) and each page
    /// that got, or failed to get, a session. Runs on the request's task:
    /// keep it short (count, log, sample).
    ///
    /// ```
    /// # #[cfg(feature = "client")] {
    /// use bosh_prebind::{Outcome, PrebindLayer};
    ///
    /// let layer = PrebindLayer::new("http://127.0.0.1:5280/http-bind".parse().unwrap())
    ///     .on_outcome(|outcome: &Outcome<'_>| match outcome.result {
    ///         Ok(session) => println!("{:?} {} in {:?}", outcome.path, session.jid, outcome.elapsed),
    ///         Err(error) => println!("{:?} failed: {}", outcome.path, error.condition()),
    ///     });
    /// # }
    /// ```
    pub fn on_outcome<F>(mut self, hook: F) -> Self
    where
        F: Fn(&crate::Outcome<'_>) + Send + Sync + 'static,
    {
        self.config().on_outcome = Some(Arc::new(hook));
        self
    }

    /// At most one WARN per `interval` for failed prebinds (default 10 s),
    /// with the number left out since the last one; the others are logged
    /// at DEBUG. When the CM is down, every page view fails the same way.
    pub fn failure_warn_interval(mut self, interval: Duration) -> Self {
        self.config().warnings = Arc::new(crate::telemetry::OutageWarnings::new(interval));
        self
    }

    /// Logs in with SASL2 + Bind 2 (XEP-0388, XEP-0386) when the server
    /// offers them in its session-creation features: 2 round trips instead
    /// of 4 (3 instead of 5 with SCRAM). On by default; `false` is "classic
    /// only", for a server whose SASL2 misbehaves. FAST tokens need SASL2.
    pub fn sasl2(mut self, enabled: bool) -> Self {
        self.config().sasl2 = enabled;
        self
    }

    /// Called with the bare JID and the token whenever a login brings back a
    /// FAST token (XEP-0484): asked for with
    /// [`Credentials::request_fast_token`](crate::Credentials::request_fast_token),
    /// or a rotation the server made unasked. Store it in place of the
    /// previous one (the newest is the one that works); keep it as secret as
    /// a password. Runs on the request's task: hand slow storage off.
    ///
    /// ```
    /// # #[cfg(feature = "client")] {
    /// use bosh_prebind::PrebindLayer;
    ///
    /// let layer = PrebindLayer::new("http://127.0.0.1:5280/http-bind".parse().unwrap())
    ///     .on_fast_token(|jid, token| {
    ///         // e.g. vault.store(jid, &token.token, &token.user_agent_id, token.expiry.as_deref())
    ///         let _ = (jid, token);
    ///     });
    /// # }
    /// ```
    pub fn on_fast_token<F>(mut self, f: F) -> Self
    where
        F: Fn(&str, &crate::FastToken) + Send + Sync + 'static,
    {
        self.config().on_fast_token = Some(Arc::new(f));
        self
    }

    /// Accepts prebind requests from this other origin
    /// (`https://app.example.org`), which cross-site checks refuse otherwise.
    pub fn allow_origin(mut self, origin: impl Into<String>) -> Self {
        self.config().allowed_origins.push(origin.into());
        self
    }
}

/// HTML injection: which pages get a session, and where it goes.
impl<T> PrebindLayer<T> {
    /// Injects a session into the HTML answered for exactly this path
    /// (`GET` only; the handshake runs concurrently with your handler).
    pub fn inject_path(mut self, path: impl Into<String>) -> Self {
        self.config().pages.paths.push(path.into());
        self
    }

    /// Injects a session into the HTML answered for paths under `prefix`.
    pub fn inject_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.config().pages.prefixes.push(prefix.into());
        self
    }

    /// Injects a session into the HTML answered for requests `predicate`
    /// accepts (in addition to the paths and prefixes).
    pub fn inject_when<F>(mut self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.config().pages.predicate = Some(Arc::new(predicate));
        self
    }

    /// The marker comment's text: `marker("chat")` places the snippet at
    /// `<!--chat-->` (default `xmpp-prebind`).
    ///
    /// # Panics
    ///
    /// When the text is empty, longer than 50 bytes, or contains `--` or `>`
    /// (it would not be one comment).
    pub fn marker(mut self, text: &str) -> Self {
        assert!(
            !text.is_empty()
                && text.len() + 7 <= crate::html::scanner::MAX_MARKER_LEN
                && !text.contains("--")
                && !text.contains('>'),
            "invalid marker comment text {text:?}: 1-50 bytes, no '--' or '>'"
        );
        self.config().pages.marker = format!("<!--{text}-->").into_bytes().into_boxed_slice();
        self
    }

    /// Places the snippet only at the marker, wherever it is in the page (or
    /// at the end without one), ignoring `</head>` and `<body>`.
    pub fn marker_only(mut self, marker_only: bool) -> Self {
        self.config().pages.marker_only = marker_only;
        self
    }

    /// The `id` of the injected `<script>` element (default `xmpp-prebind`).
    ///
    /// # Panics
    ///
    /// When the id is empty, over 64 bytes, or has characters other than
    /// ASCII letters, digits, `-`, `_`, `.` and `:`.
    pub fn snippet_id(mut self, id: impl Into<String>) -> Self {
        let id = id.into();
        assert!(valid_element_id(&id), "invalid snippet element id {id:?}");
        self.config().pages.element_id = id;
        self
    }

    /// Lets pages keep their session across page views (off by default):
    /// a request carrying the cookie `name` (set by the page's own script
    /// when the tab navigates while it holds a live session kept in
    /// `sessionStorage`, see the README's "Sessions across page views")
    /// gets no new session but
    /// `{"reuse":true,"jid":…,"bosh_service_url":…}` in the snippet (always
    /// the default element), and the page restores the session it keeps.
    /// The cookie carries no session: a forged one only costs its sender
    /// their own injection (their page then asks `GET` the prebind path).
    /// Off by default because every page script on the injected routes
    /// must understand `{"reuse":true}`.
    pub fn reuse_cookie(mut self, name: impl Into<String>) -> Self {
        self.config().pages.reuse_cookie = Some(name.into());
        self
    }

    /// Renders the injected markup yourself (the default is a
    /// `<script type="application/json">` element). Whatever you return is
    /// inserted verbatim: escape what you interpolate.
    pub fn render_snippet<F>(mut self, render: F) -> Self
    where
        F: Fn(crate::SnippetContext<'_>) -> String + Send + Sync + 'static,
    {
        self.config().pages.renderer = Some(Arc::new(render));
        self
    }
}

impl<S, T: Clone> Layer<S> for PrebindLayer<T> {
    type Service = Prebind<S, T>;

    fn layer(&self, inner: S) -> Self::Service {
        Prebind::new(inner, self.config.clone(), self.transport.clone())
    }
}
