//! Several connection managers (the nodes of one cluster with no load
//! balancer in front): [`BoshNode`], what the layer knows of each, and their
//! health, shared by every clone of the service.
//!
//! A prebind goes to the next healthy node, round-robin. A node whose
//! session-creation request fails at the transport (refused, connect or
//! request timeout, TLS) is marked down for a back-off (5 s, doubling up to
//! 60 s) and skipped meanwhile; when it expires, one prebind probes it while
//! the others keep skipping it. The prebind whose node failed is made at the
//! next node within the same handshake deadline. Never once a sid exists: a
//! BOSH session belongs to the CM that created it (XEP-0124 §7), so a failure
//! later in the handshake is an error, not a retry.
//!
//! Lock-free: each node's state is three atomics, read once per choice.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::Uri;
use tokio::time::Instant;

use crate::transport::bosh_url::without_user_info;

/// One connection manager of a cluster, for
/// [`PrebindLayer::new_cluster`](crate::PrebindLayer::new_cluster): the URL
/// the layer posts to, and optionally the URL browsers use for the sessions
/// it makes.
///
/// ```
/// use bosh_prebind::BoshNode;
///
/// let node = BoshNode::new("http://10.0.0.1:5280/http-bind".parse::<http::Uri>().unwrap())
///     .public_url("https://xmpp-1.example.org/http-bind");
/// assert_eq!(node.url().host(), Some("10.0.0.1"));
/// ```
#[derive(Clone)]
pub struct BoshNode {
    url: Uri,
    public_url: Option<String>,
}

impl BoshNode {
    /// A node the layer reaches at `url` (a [`BoshUrl`](crate::BoshUrl) or
    /// an [`http::Uri`]).
    pub fn new(url: impl Into<Uri>) -> Self {
        BoshNode {
            url: url.into(),
            public_url: None,
        }
    }

    /// The `bosh_service_url` browsers get for sessions made at this node,
    /// when they reach it by another address than the layer does.
    pub fn public_url(mut self, url: impl Into<String>) -> Self {
        self.public_url = Some(url.into());
        self
    }

    /// The URL the layer posts to.
    pub fn url(&self) -> &Uri {
        &self.url
    }
}

impl From<crate::transport::BoshUrl> for BoshNode {
    fn from(url: crate::transport::BoshUrl) -> Self {
        BoshNode::new(url)
    }
}

impl From<Uri> for BoshNode {
    fn from(url: Uri) -> Self {
        BoshNode::new(url)
    }
}

impl fmt::Debug for BoshNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoshNode")
            .field("url", &format_args!("{}", self.url))
            .field("public_url", &self.public_url)
            .finish()
    }
}

/// Why a list of nodes cannot make a layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    /// The list is empty.
    #[error("a cluster needs at least one connection manager URL")]
    NoNode,
    /// A URL without a scheme or host (`/http-bind`): the layer cannot post to it.
    #[error("connection manager URL {0:?} is not absolute (http://host:port/path)")]
    NotAbsolute(String),
    /// The same URL twice: it would get twice the share of prebinds.
    #[error("connection manager URL {0:?} is listed twice")]
    Duplicate(String),
}

/// What the layer knows of one node.
#[derive(Clone)]
pub(crate) struct Node {
    pub(crate) url: Uri,
    public_url: Option<String>,
    /// The `bosh_service_url` of sessions made here (see
    /// [`Cluster::refresh_browser_urls`]).
    pub(crate) browser_url: String,
}

/// One node's health. Times are milliseconds since the cluster's epoch,
/// plus one (so that 0 can mean "never").
#[derive(Default)]
struct Health {
    /// Skipped until then; 0: up.
    down_until: AtomicU64,
    /// The cluster's failure count when it last failed; 0: never.
    failure: AtomicU64,
    /// The back-off of its last failure; 0: none (up).
    backoff: AtomicU64,
}

/// The nodes and their shared health.
#[derive(Clone)]
pub(crate) struct Cluster {
    nodes: Vec<Node>,
    /// Shared by every clone of the service (the config `Arc` holds it).
    health: Arc<[Health]>,
    /// Round-robin position.
    next: Arc<AtomicUsize>,
    /// Failures so far, all nodes: orders them without a clock.
    failures: Arc<AtomicU64>,
    epoch: Instant,
    backoff_initial: Duration,
    backoff_max: Duration,
}

impl Cluster {
    /// The nodes, checked.
    pub(crate) fn new(nodes: Vec<BoshNode>) -> Result<Self, ClusterError> {
        if nodes.is_empty() {
            return Err(ClusterError::NoNode);
        }
        for (i, node) in nodes.iter().enumerate() {
            if node.url.scheme().is_none() || node.url.host().is_none() {
                return Err(ClusterError::NotAbsolute(node.url.to_string()));
            }
            if nodes[..i].iter().any(|earlier| earlier.url == node.url) {
                return Err(ClusterError::Duplicate(node.url.to_string()));
            }
        }
        Ok(Self::unchecked(nodes))
    }

    /// One node, as given (`PrebindLayer::with_transport` never checked its URL).
    pub(crate) fn single(url: Uri) -> Self {
        Self::unchecked(vec![BoshNode::new(url)])
    }

    fn unchecked(nodes: Vec<BoshNode>) -> Self {
        let nodes: Vec<Node> = nodes
            .into_iter()
            .map(|node| Node {
                browser_url: node.url.to_string(),
                url: node.url,
                public_url: node.public_url,
            })
            .collect();
        Cluster {
            health: (0..nodes.len()).map(|_| Health::default()).collect(),
            nodes,
            next: Arc::default(),
            failures: Arc::default(),
            epoch: Instant::now(),
            backoff_initial: Duration::from_secs(5),
            backoff_max: Duration::from_secs(60),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.nodes.len()
    }

    pub(crate) fn node(&self, index: usize) -> &Node {
        &self.nodes[index.min(self.nodes.len() - 1)]
    }

    /// Sets how long a failed node is skipped: `initial`, doubling per
    /// failure in a row up to `max`. Zero turns marking down off.
    pub(crate) fn set_backoff(&mut self, initial: Duration, max: Duration) {
        self.backoff_initial = initial;
        self.backoff_max = max.max(initial);
    }

    /// Decides each node's `bosh_service_url`, most specific first: the
    /// node's own public URL; with one node, or with one public URL for all
    /// (`public_bosh_url`, e.g. a load balancer for browsers), `default`;
    /// with the pass-through, the node's own path under it; else the node's
    /// URL.
    pub(crate) fn refresh_browser_urls(
        &mut self,
        default: &str,
        default_set: bool,
        passthrough: Option<&str>,
    ) {
        let single = self.nodes.len() == 1;
        for (index, node) in self.nodes.iter_mut().enumerate() {
            node.browser_url = match (&node.public_url, passthrough) {
                (Some(public), _) => public.clone(),
                _ if single || default_set => default.to_owned(),
                (None, Some(path)) => node_path(path, index),
                (None, None) => without_user_info(&node.url),
            };
        }
    }

    /// Which node a pass-through path forwards to: the base path goes to the
    /// first node that is up (any node of a cluster whose nodes forward to
    /// each other will do); `{base}/{index}` to that node.
    pub(crate) fn passthrough_target(&self, base: &str, path: &str) -> Option<usize> {
        if path == base {
            return Some(if self.nodes.len() == 1 {
                0
            } else {
                self.first_up()
            });
        }
        if self.nodes.len() == 1 {
            return None;
        }
        let index = path
            .strip_prefix(base.trim_end_matches('/'))?
            .strip_prefix('/')?;
        // Digits only, no leading zero: one path per node.
        let canonical = !index.is_empty()
            && index.bytes().all(|b| b.is_ascii_digit())
            && (index == "0" || !index.starts_with('0'));
        if !canonical {
            return None;
        }
        let index: usize = index.parse().ok()?;
        (index < self.nodes.len()).then_some(index)
    }

    fn first_up(&self) -> usize {
        let now = self.now();
        (0..self.nodes.len())
            .find(|&i| self.health[i].down_until.load(Ordering::Relaxed) <= now)
            .unwrap_or(0)
    }

    fn now(&self) -> u64 {
        let elapsed = Instant::now().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_millis())
            .unwrap_or(u64::MAX / 2)
            .saturating_add(1)
    }

    /// The nodes in this prebind's order: round-robin from the next start.
    pub(crate) fn ring(&self) -> Ring {
        let n = self.nodes.len();
        Ring {
            start: self.next.fetch_add(1, Ordering::Relaxed) % n,
            n,
            failures_before: self.failures.load(Ordering::Relaxed),
        }
    }

    /// True when the node may be tried in the first pass: up, or its
    /// back-off is over and this caller won the right to probe it (the
    /// others keep skipping it meanwhile).
    pub(crate) fn claim(&self, index: usize) -> bool {
        let health = &self.health[index];
        let until = health.down_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        let now = self.now();
        if until > now {
            return false;
        }
        let rearm = now.saturating_add(health.backoff.load(Ordering::Relaxed));
        health
            .down_until
            .compare_exchange(until, rearm, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    }

    /// True when the node may be tried as a last resort, every node that
    /// was up having failed: it is down because of a failure older than
    /// this prebind (the ones this prebind saw fail are not tried again).
    pub(crate) fn last_resort(&self, index: usize, ring: &Ring) -> bool {
        let health = &self.health[index];
        health.down_until.load(Ordering::Relaxed) != 0
            && health.failure.load(Ordering::Relaxed) <= ring.failures_before
    }

    /// The node answered: it is up.
    pub(crate) fn answered(&self, index: usize) {
        let health = &self.health[index];
        // Read first: no write (no cache-line bouncing) while all is well.
        if health.down_until.load(Ordering::Relaxed) != 0
            || health.backoff.load(Ordering::Relaxed) != 0
        {
            health.down_until.store(0, Ordering::Relaxed);
            health.backoff.store(0, Ordering::Relaxed);
        }
    }

    /// The node failed before a session existed: marks it down and gives
    /// the back-off (zero when marking down is off).
    pub(crate) fn failed(&self, index: usize) -> Duration {
        let health = &self.health[index];
        let now = self.now();
        let failure = self.failures.fetch_add(1, Ordering::Relaxed) + 1;
        health.failure.store(failure, Ordering::Relaxed);
        let initial = millis(self.backoff_initial);
        if initial == 0 {
            return Duration::ZERO;
        }
        // Concurrent failures may double it once instead of twice: harmless.
        let backoff = match health.backoff.load(Ordering::Relaxed) {
            0 => initial,
            previous => previous.saturating_mul(2).min(millis(self.backoff_max)),
        };
        health.backoff.store(backoff, Ordering::Relaxed);
        health
            .down_until
            .store(now.saturating_add(backoff), Ordering::Relaxed);
        Duration::from_millis(backoff)
    }
}

/// The order one prebind tries the nodes in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ring {
    start: usize,
    n: usize,
    /// The cluster's failure count when the prebind started.
    failures_before: u64,
}

impl Ring {
    /// Node indexes, from the start around.
    pub(crate) fn indexes(self) -> impl Iterator<Item = usize> {
        let (start, n) = (self.start, self.n);
        (0..n).map(move |k| (start + k) % n)
    }
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX / 4)
}

/// The pass-through path of node `index`: `{base}/{index}`.
pub(crate) fn node_path(base: &str, index: usize) -> String {
    format!("{}/{index}", base.trim_end_matches('/'))
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(
                self.nodes
                    .iter()
                    .map(|node| format!("{} -> {}", node.url, node.browser_url)),
            )
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(n: usize) -> Cluster {
        Cluster::new(
            (0..n)
                .map(|i| BoshNode::new(format!("http://n{i}:5280/b").parse::<Uri>().unwrap()))
                .collect(),
        )
        .unwrap()
    }

    #[test]
    fn refuses_bad_lists() {
        assert_eq!(Cluster::new(vec![]).unwrap_err(), ClusterError::NoNode);
        let relative = BoshNode::new(Uri::from_static("/http-bind"));
        assert!(matches!(
            Cluster::new(vec![relative]),
            Err(ClusterError::NotAbsolute(_))
        ));
        let a = BoshNode::new(Uri::from_static("http://a/b"));
        assert!(matches!(
            Cluster::new(vec![a.clone(), a]),
            Err(ClusterError::Duplicate(_))
        ));
    }

    #[test]
    fn passthrough_paths() {
        let three = cluster(3);
        assert_eq!(three.passthrough_target("/b", "/b"), Some(0));
        assert_eq!(three.passthrough_target("/b", "/b/2"), Some(2));
        assert_eq!(three.passthrough_target("/b/", "/b/1"), Some(1));
        for path in [
            "/b/3", "/b/01", "/b/", "/b/+1", "/b/1/", "/bx", "/b1", "/c/1",
        ] {
            assert_eq!(three.passthrough_target("/b", path), None, "{path}");
        }
        let one = cluster(1);
        assert_eq!(one.passthrough_target("/b", "/b"), Some(0));
        assert_eq!(one.passthrough_target("/b", "/b/0"), None);
        assert_eq!(node_path("/b/", 2), "/b/2");
    }

    #[test]
    fn browser_urls_most_specific_first() {
        let mut two = Cluster::new(vec![
            BoshNode::new(Uri::from_static("http://a/b")).public_url("https://a.example/b"),
            BoshNode::new(Uri::from_static("http://c/b")),
        ])
        .unwrap();
        two.refresh_browser_urls("/bosh", false, Some("/bosh"));
        assert_eq!(two.node(0).browser_url, "https://a.example/b");
        assert_eq!(two.node(1).browser_url, "/bosh/1");
        two.refresh_browser_urls("https://lb.example/b", true, Some("/bosh"));
        assert_eq!(two.node(1).browser_url, "https://lb.example/b");
        two.refresh_browser_urls("http://a/b", false, None);
        assert_eq!(two.node(1).browser_url, "http://c/b");
        let mut one = cluster(1);
        one.refresh_browser_urls("/bosh", false, Some("/bosh"));
        assert_eq!(one.node(0).browser_url, "/bosh");
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_doubles_up_to_the_max_and_one_caller_probes() {
        let mut two = cluster(2);
        two.set_backoff(Duration::from_secs(5), Duration::from_secs(12));
        assert!(two.claim(0));
        assert_eq!(two.failed(0), Duration::from_secs(5));
        assert!(!two.claim(0));
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(two.claim(0), "back-off over: probed");
        assert!(!two.claim(0), "only one probe at a time");
        assert_eq!(two.failed(0), Duration::from_secs(10));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(two.claim(0));
        assert_eq!(two.failed(0), Duration::from_secs(12), "capped");
        two.answered(0);
        assert!(two.claim(0));
        assert_eq!(two.failed(0), Duration::from_secs(5), "reset by an answer");
        two.set_backoff(Duration::ZERO, Duration::ZERO);
        two.answered(0);
        assert_eq!(two.failed(0), Duration::ZERO);
        assert!(two.claim(0), "marking down off");
    }
}
