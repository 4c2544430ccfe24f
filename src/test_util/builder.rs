//! What the fake serves, chosen builder-style.

use std::time::Duration;

use http::{HeaderName, HeaderValue, Uri};

use super::fake_cm::FakeCm;
use super::fault::Fault;
use super::features::{SessionFeature, StreamFeatures};

/// Where the fake says it is, unless told otherwise.
pub const DEFAULT_URL: &str = "http://cm.internal.example:5280/http-bind";
/// The `sid` of the first session (later ones get `-2`, `-3`, … appended).
pub const DEFAULT_SID: &str = "1a12ded7-4c59-4f35-9c13-46c86d9498d4";
/// The anonymous domain served by default.
pub const DEFAULT_DOMAIN: &str = "anon.localhost";
/// The full JID bound by default (a Prosody anonymous JID).
pub const DEFAULT_JID: &str = "eunyql_gd_l2kozyecbj_nbi@anon.localhost/GtONlPbg6nB5";

/// The fake's configuration; see [`FakeCm::builder`].
#[derive(Debug, Clone)]
pub struct FakeCmBuilder {
    pub(super) config: Config,
}

#[derive(Debug, Clone)]
pub(super) struct Config {
    pub(super) url: Uri,
    pub(super) domain: String,
    pub(super) sid: String,
    pub(super) jid: String,
    pub(super) mechanisms: Vec<String>,
    pub(super) account: Option<(String, String)>,
    pub(super) scram_salt: Vec<u8>,
    pub(super) scram_iterations: u32,
    pub(super) features: StreamFeatures,
    pub(super) session: SessionFeature,
    pub(super) with_sid: bool,
    pub(super) tamper_server_signature: bool,
    pub(super) server_final_in_challenge: bool,
    pub(super) xml_declaration: bool,
    pub(super) delay: Duration,
    /// `(request index in its session or every request, fault)`.
    pub(super) faults: Vec<(Option<usize>, Fault)>,
    pub(super) hold: bool,
    pub(super) keep_requests: bool,
    pub(super) max_sessions: usize,
    pub(super) response_headers: Vec<(HeaderName, HeaderValue)>,
}

impl Default for FakeCmBuilder {
    fn default() -> Self {
        FakeCmBuilder {
            config: Config {
                url: Uri::from_static(DEFAULT_URL),
                domain: DEFAULT_DOMAIN.to_owned(),
                sid: DEFAULT_SID.to_owned(),
                jid: DEFAULT_JID.to_owned(),
                mechanisms: vec!["ANONYMOUS".to_owned()],
                account: None,
                scram_salt: b"fake-cm-salt-0123".to_vec(),
                scram_iterations: 4096,
                features: StreamFeatures::InResponse,
                session: SessionFeature::Optional,
                with_sid: true,
                tamper_server_signature: false,
                server_final_in_challenge: false,
                xml_declaration: false,
                delay: Duration::ZERO,
                faults: Vec::new(),
                hold: false,
                keep_requests: true,
                max_sessions: 4096,
                response_headers: Vec::new(),
            },
        }
    }
}

impl FakeCmBuilder {
    /// The URL requests must be sent to ([`DEFAULT_URL`]). Over TCP only
    /// its path is checked.
    pub fn url(mut self, url: Uri) -> Self {
        self.config.url = url;
        self
    }

    /// The XMPP domain served ([`DEFAULT_DOMAIN`]): the creation request's
    /// `to` must name it.
    pub fn domain(mut self, domain: impl Into<String>) -> Self {
        self.config.domain = domain.into();
        self
    }

    /// The first session's `sid` ([`DEFAULT_SID`]).
    pub fn sid(mut self, sid: impl Into<String>) -> Self {
        self.config.sid = sid.into();
        self
    }

    /// The full JID bound when the client asks for no resource
    /// ([`DEFAULT_JID`]); a requested resource replaces its resource part.
    /// Written escaped, so any text may be tried.
    pub fn jid(mut self, jid: impl Into<String>) -> Self {
        self.config.jid = jid.into();
        self
    }

    /// The SASL mechanisms offered, in order (`["ANONYMOUS"]`). The fake has
    /// server sides for ANONYMOUS, PLAIN, SCRAM-SHA-1 and SCRAM-SHA-256;
    /// others may be offered, and choosing one is a protocol violation.
    pub fn mechanisms<M: Into<String>>(mut self, mechanisms: impl IntoIterator<Item = M>) -> Self {
        self.config.mechanisms = mechanisms.into_iter().map(Into::into).collect();
        self
    }

    /// The one account the server knows, for PLAIN and SCRAM (none).
    pub fn account(mut self, localpart: impl Into<String>, password: impl Into<String>) -> Self {
        self.config.account = Some((localpart.into(), password.into()));
        self
    }

    /// The SCRAM salt and iteration count (`fake-cm-salt-0123`, 4096).
    /// The server's keys are derived once per hash.
    pub fn scram(mut self, salt: &[u8], iterations: u32) -> Self {
        self.config.scram_salt = salt.to_vec();
        self.config.scram_iterations = iterations;
        self
    }

    /// When stream features come ([`StreamFeatures::InResponse`]).
    pub fn stream_features(mut self, when: StreamFeatures) -> Self {
        self.config.features = when;
        self
    }

    /// How the session IQ is advertised ([`SessionFeature::Optional`]).
    pub fn session_feature(mut self, session: SessionFeature) -> Self {
        self.config.session = session;
        self
    }

    /// The creation answer carries no `sid` (a broken CM).
    pub fn without_sid(mut self) -> Self {
        self.config.with_sid = false;
        self
    }

    /// The SCRAM server signature is wrong: a server that does not know
    /// the password (or an impostor).
    pub fn tamper_server_signature(mut self) -> Self {
        self.config.tamper_server_signature = true;
        self
    }

    /// The SCRAM server-final comes in a `<challenge/>`, answered by an
    /// empty `<response/>`, then an empty `<success/>` (RFC 6120 §6.3.10
    /// allows it).
    pub fn server_final_in_challenge(mut self) -> Self {
        self.config.server_final_in_challenge = true;
        self
    }

    /// Every answer starts with `<?xml version='1.0' encoding='UTF-8'?>`.
    pub fn xml_declaration(mut self) -> Self {
        self.config.xml_declaration = true;
        self
    }

    /// Every answer comes after `delay` (on tokio's clock: pausable).
    pub fn delay(mut self, delay: Duration) -> Self {
        self.config.delay = delay;
        self
    }

    /// `fault` instead of the answer to request `index` (0-based, counted
    /// in each session: 0 is the creation request, terminations not
    /// counted). Earlier faults win over later ones for the same request.
    pub fn fault_at(mut self, index: usize, fault: Fault) -> Self {
        self.config.faults.push((Some(index), fault));
        self
    }

    /// `fault` instead of every answer (terminations excepted).
    pub fn fault_always(mut self, fault: Fault) -> Self {
        self.config.faults.push((None, fault));
        self
    }

    /// Answers wait until [`FakeCm::release`] (terminations excepted); the
    /// requests are received and recorded meanwhile.
    pub fn hold_answers(mut self) -> Self {
        self.config.hold = true;
        self
    }

    /// Whether request bodies are kept for [`FakeCm::requests`] (yes).
    /// Benchmarks turn it off so memory stays flat; counters still count.
    pub fn keep_requests(mut self, keep: bool) -> Self {
        self.config.keep_requests = keep;
        self
    }

    /// At most this many sessions are remembered (4096); the oldest is
    /// forgotten first, as a CM expires idle sessions. A request for a
    /// forgotten session is a protocol violation.
    pub fn max_sessions(mut self, max: usize) -> Self {
        self.config.max_sessions = max.max(1);
        self
    }

    /// A header added to every HTTP answer (none), e.g. one the layer must
    /// not pass on.
    pub fn response_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.config.response_headers.push((name, value));
        self
    }

    /// The fake, ready to be a transport.
    pub fn build(self) -> FakeCm {
        FakeCm::from_config(self.config)
    }
}
