//! [`Config`]: everything the middleware needs, built by
//! [`PrebindLayer`](crate::PrebindLayer) and shared by every clone of the
//! service in one `Arc`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use tokio::sync::Semaphore;

use crate::driver::ClientSettings;
use crate::html::snippet::Renderer;
use crate::middleware::cluster::Cluster;
use crate::middleware::credentials_source::{CredentialsSource, NoCredentials};
use crate::middleware::pool::PoolLink;
use crate::protocol::credentials::Credentials;
use crate::protocol::fast::FastToken;
use crate::protocol::scram_cache::ScramCache;
use crate::telemetry::{OutageWarnings, OutcomeHook};
use crate::transport::bosh_url::UriForLogs;

/// Handshakes in progress at once, by default: well above what one CM
/// serves (Prosody: about 1000 anonymous logins per second per core, a few
/// milliseconds each), well below what would exhaust sockets.
const DEFAULT_MAX_HANDSHAKES: usize = 256;

/// At most one WARN per this interval for failed prebinds (CM down: every
/// page view fails the same way).
const DEFAULT_WARN_INTERVAL: Duration = Duration::from_secs(10);

/// SCRAM derivations at once on blocking threads, by default: one per core,
/// so that a burst of cold logins leaves the runtime's workers their share.
fn default_derivations() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

/// Everything the middleware needs, shared by all its clones in one `Arc`.
#[derive(Clone)]
pub(crate) struct Config {
    pub(crate) client: ClientSettings,
    /// The connection managers (one, or the nodes of a cluster) and their
    /// health.
    pub(crate) cluster: Cluster,
    /// The BOSH URL browsers are told when no node is named (one node: the
    /// only one; an error snippet).
    pub(crate) public_bosh_url: String,
    /// True once `public_bosh_url` was set by the user.
    pub(crate) public_bosh_url_set: bool,
    pub(crate) passthrough_path: Option<String>,
    pub(crate) passthrough: PassthroughLimits,
    pub(crate) prebind_path: String,
    pub(crate) allowed_domains: Vec<String>,
    pub(crate) credentials: Arc<dyn CredentialsSource>,
    pub(crate) default_wait: u32,
    pub(crate) max_wait: u32,
    pub(crate) max_hold: u32,
    pub(crate) lang: String,
    pub(crate) route: Option<String>,
    pub(crate) max_request_body: usize,
    pub(crate) allowed_origins: Vec<String>,
    pub(crate) pages: Pages,
    /// Permits for handshakes in progress, shared by every clone.
    pub(crate) handshakes: Arc<Semaphore>,
    /// How many permits `handshakes` was made with.
    pub(crate) max_handshakes: usize,
    /// The warm pool, if one was asked for.
    pub(crate) pool: Option<Arc<PoolLink>>,
    /// The identity of a fixed [`Credentials`] source: the only one the
    /// pool makes sessions for.
    pub(crate) pool_credentials: Option<Credentials>,
    /// SASL2 + Bind 2 where offered (else classic only).
    pub(crate) sasl2: bool,
    /// Told of every FAST token a login brings back.
    pub(crate) on_fast_token: Option<Arc<FastTokenHook>>,
    /// Called with every prebind's outcome.
    pub(crate) on_outcome: Option<Arc<OutcomeHook>>,
    /// The WARN rate limit for failed prebinds, shared by every clone.
    pub(crate) warnings: Arc<OutageWarnings>,
}

/// Receives the bare JID and the new FAST token of a login.
pub(crate) type FastTokenHook = dyn Fn(&str, &FastToken) + Send + Sync;

/// The same-origin BOSH path's own limits: chat traffic, not handshakes.
#[derive(Clone)]
pub(crate) struct PassthroughLimits {
    /// The browser's request body (read whole: the transport takes whole
    /// bodies). 1 MiB by default: a vCard with a photo is a few hundred KiB.
    pub(crate) max_request_body: usize,
    /// The CM's answer, streamed; no cap by default (the CM is trusted).
    pub(crate) max_response_body: Option<u64>,
    /// The browser's address, sent to the CM as `X-Forwarded-For`.
    pub(crate) client_ip: Option<Arc<ClientIp>>,
}

/// Finds the browser's address in the request head.
pub(crate) type ClientIp = dyn Fn(&Parts) -> Option<std::net::IpAddr> + Send + Sync;

/// Which HTML responses get a session, and how it is written into them.
#[derive(Clone)]
pub(crate) struct Pages {
    pub(crate) paths: Vec<String>,
    pub(crate) prefixes: Vec<String>,
    pub(crate) predicate: Option<Arc<PagePredicate>>,
    /// The whole marker comment, `<!--…-->`.
    pub(crate) marker: Box<[u8]>,
    pub(crate) marker_only: bool,
    pub(crate) element_id: String,
    pub(crate) renderer: Option<Arc<Renderer>>,
    /// The cookie by which a page's script says it holds a live session
    /// (no handshake then); off by default.
    pub(crate) reuse_cookie: Option<String>,
}

/// Decides whether a request's page gets a session.
pub(crate) type PagePredicate = dyn Fn(&Parts) -> bool + Send + Sync;

impl Pages {
    /// True when no route is configured: the fast path skips everything.
    pub(crate) fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.prefixes.is_empty() && self.predicate.is_none()
    }

    /// True when the request carries the reuse cookie (any value but empty).
    pub(crate) fn asks_reuse(&self, headers: &http::HeaderMap) -> bool {
        let Some(name) = self.reuse_cookie.as_deref() else {
            return false;
        };
        // RFC 6265 §5.4: `name=value` pairs separated by `; `, possibly
        // over several Cookie fields (HTTP/2).
        headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .any(|(n, v)| n == name && !v.trim_matches('"').is_empty())
    }

    /// Matches by path alone (the predicate needs the request head).
    pub(crate) fn matches_path(&self, path: &str) -> bool {
        self.paths.iter().any(|p| p == path)
            || self.prefixes.iter().any(|p| path.starts_with(p.as_str()))
    }
}

impl Config {
    pub(crate) fn new(cluster: Cluster) -> Self {
        let mut config = Config {
            public_bosh_url: cluster.node(0).url.to_string(),
            cluster,
            public_bosh_url_set: false,
            passthrough_path: None,
            passthrough: PassthroughLimits {
                max_request_body: 1024 * 1024,
                max_response_body: None,
                client_ip: None,
            },
            client: ClientSettings {
                request_timeout: Duration::from_secs(5),
                handshake_timeout: Duration::from_secs(10),
                max_response_body: 64 * 1024,
                terminates: Arc::new(Semaphore::new(crate::driver::MAX_CONCURRENT_TERMINATES)),
                scram_cache: Some(Arc::new(ScramCache::new(1024))),
                derive_inline: false,
                derivations: Arc::new(Semaphore::new(default_derivations())),
            },
            prebind_path: "/prebind".to_owned(),
            allowed_domains: Vec::new(),
            credentials: Arc::new(NoCredentials),
            default_wait: 59,
            max_wait: 59,
            max_hold: 1,
            lang: "en".to_owned(),
            route: None,
            max_request_body: 2048,
            allowed_origins: Vec::new(),
            handshakes: Arc::new(Semaphore::new(DEFAULT_MAX_HANDSHAKES)),
            max_handshakes: DEFAULT_MAX_HANDSHAKES,
            pool: None,
            pool_credentials: None,
            sasl2: true,
            on_fast_token: None,
            on_outcome: None,
            warnings: Arc::new(OutageWarnings::new(DEFAULT_WARN_INTERVAL)),
            pages: Pages {
                paths: Vec::new(),
                prefixes: Vec::new(),
                predicate: None,
                marker: Box::from(&b"<!--xmpp-prebind-->"[..]),
                marker_only: false,
                element_id: "xmpp-prebind".to_owned(),
                renderer: None,
                reuse_cookie: None,
            },
        };
        config.refresh_browser_urls();
        config
    }

    /// Recomputes each node's `bosh_service_url` after a setter changed
    /// what it depends on.
    pub(crate) fn refresh_browser_urls(&mut self) {
        self.cluster.refresh_browser_urls(
            &self.public_bosh_url,
            self.public_bosh_url_set,
            self.passthrough_path.as_deref(),
        );
    }

    /// The node a request on `path` is forwarded to, if it is a
    /// pass-through path.
    pub(crate) fn passthrough_target(&self, path: &str) -> Option<usize> {
        let base = self.passthrough_path.as_deref()?;
        self.cluster.passthrough_target(base, path)
    }

    /// True when sessions may be opened on `domain` (already normalized).
    pub(crate) fn is_allowed(&self, domain: &str) -> bool {
        self.allowed_domains.iter().any(|d| d == domain)
    }

    /// The BOSH URL the browser is told to use for a session made at
    /// `node`.
    pub(crate) fn bosh_service_url(&self, node: usize) -> &str {
        &self.cluster.node(node).browser_url
    }

    /// The CM's URL for server-side logs (with several nodes, every node's,
    /// comma-separated): scheme, host, port and path, never a user-info part
    /// or a query (they may hold secrets).
    pub(crate) fn cm_for_logs(&self) -> CmForLogs<'_> {
        CmForLogs(&self.cluster)
    }
}

/// Displays the CM URLs without their user-info and query: see
/// [`Config::cm_for_logs`].
pub(crate) struct CmForLogs<'a>(&'a Cluster);

impl fmt::Display for CmForLogs<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for index in 0..self.0.len() {
            if index > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{}", UriForLogs(&self.0.node(index).url))?;
        }
        Ok(())
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("client", &self.client)
            .field("nodes", &self.cluster)
            .field("public_bosh_url", &self.public_bosh_url)
            .field("passthrough_path", &self.passthrough_path)
            .field("prebind_path", &self.prebind_path)
            .field("allowed_domains", &self.allowed_domains)
            .field("default_wait", &self.default_wait)
            .field("max_wait", &self.max_wait)
            .field("max_hold", &self.max_hold)
            .field("max_request_body", &self.max_request_body)
            .field("sasl2", &self.sasl2)
            .field("allowed_origins", &self.allowed_origins)
            .field("inject_paths", &self.pages.paths)
            .field("inject_prefixes", &self.pages.prefixes)
            .field("marker", &String::from_utf8_lossy(&self.pages.marker))
            .field("max_handshakes", &self.max_handshakes)
            .field("pool", &self.pool.as_ref().map(|link| link.0.max()))
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::middleware::cluster::BoshNode;

    #[test]
    fn the_cm_url_in_logs_has_no_user_info_or_query() {
        let config = Config::new(Cluster::single(
            "https://user:pw@xmpp.example.org:5281/http-bind?token=t"
                .parse()
                .unwrap(),
        ));
        assert_eq!(
            config.cm_for_logs().to_string(),
            "https://xmpp.example.org:5281/http-bind"
        );
        let config = Config::new(Cluster::single("http://[::1]/bosh".parse().unwrap()));
        assert_eq!(config.cm_for_logs().to_string(), "http://[::1]/bosh");
        // Several nodes: all of them.
        let config = Config::new(
            Cluster::new(vec![
                BoshNode::new(
                    "http://u:p@a.example/bosh?x=1"
                        .parse::<http::Uri>()
                        .unwrap(),
                ),
                BoshNode::new("http://b.example:5281/bosh".parse::<http::Uri>().unwrap()),
            ])
            .unwrap(),
        );
        assert_eq!(
            config.cm_for_logs().to_string(),
            "http://a.example/bosh, http://b.example:5281/bosh"
        );
    }
}
