//! XMPP pre-binding as a tower middleware: the web server logs in over BOSH
//! (XEP-0124 / XEP-0206) next to the XMPP server, and the browser *attaches*
//! to the live session instead of paying 4-6 sequential round trips.
//!
//! ```no_run
//! use axum::{Router, routing::get};
//! use bosh_prebind::{Credentials, PrebindLayer};
//!
//! # #[cfg(feature = "client")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let prebind = PrebindLayer::new("http://127.0.0.1:5280/http-bind".parse()?)
//!     .credentials(Credentials::anonymous("anon.localhost"));
//!
//! let app = Router::new()
//!     .route("/", get(|| async { "hello" }))
//!     .layer(prebind); // POST/GET /prebind now hand out sessions
//!
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//! axum::serve(listener, app).await?;
//! # Ok(()) }
//! ```
//!
//! # Why
//!
//! A browser BOSH login is a chain of dependent HTTP requests: session
//! creation, SASL (one or two), stream restart, resource bind, and sometimes a
//! session IQ. At 100 ms of round-trip time that is 0.4-0.6 s before the first
//! real stanza. Pre-binding pays those round trips at the web server's
//! distance to the connection manager (CM), usually well under a millisecond,
//! and hands the browser a JID, a SID and a RID.
//!
//! # The prebind path
//!
//! [`PrebindLayer`] answers `/prebind` (configurable) itself; every other
//! request goes to the inner service untouched.
//!
//! | request | answer | `rid` in the answer |
//! |---|---|---|
//! | `POST` `<body xmlns='http://jabber.org/protocol/httpbind' to rid wait hold/>` (every attribute optional) | `200 text/xml`: `<body jid sid rid wait hold …>` with the bind result | the **last used** RID: the page calls `attach(jid, sid, rid + 1)` |
//! | `GET` (Converse.js `prebind_url`) | `200 application/json`: `{"jid","sid","rid","wait","hold","bosh_service_url"}` | the **next** RID: passed to `attach` as is |
//!
//! Failures are answered, never raised: a BOSH `terminate` body for XML
//! clients, `{"error", "condition"}` for JSON clients, with the status saying
//! who failed: 400 malformed, 401 no credentials for this request, 403 domain
//! not allowed or cross-site request, 405 method, 413 too large, 415 not XML,
//! 502 CM unreachable, refused or answered garbage, 504 CM too slow. The
//! [`PrebindError`] is in the answer's extensions. Bad requests never reach
//! the CM. Every answer carries `Cache-Control: no-store`.
//!
//! # Sessions injected into pages (zero round trips)
//!
//! Routes chosen with [`PrebindLayer::inject_path`], [`inject_prefix`] or
//! [`inject_when`] get a session written into their HTML as it streams out:
//!
//! ```html
//! <script type="application/json" id="xmpp-prebind">{"jid":…,"sid":…,"rid":NEXT_RID,"wait":…,"hold":…,"bosh_service_url":…}</script>
//! ```
//!
//! The handshake starts when the request arrives and runs while your handler
//! works (no task is spawned: the response future and body drive it). The
//! page's bytes before the insertion point go out as they come; only the
//! insertion point waits for the session. It goes at the marker comment
//! (`<!--xmpp-prebind-->`) when that comes first, else before `</head`, else
//! before `<body`, else at the end; markup in comments, scripts, styles,
//! titles, textareas and attribute values is not mistaken for a tag. The JSON
//! is escaped for a script context (`<`, `>`, `&`, U+2028, U+2029). When the
//! handshake fails, `{"error": …, "condition": …}` takes its place and the page
//! is still served, so the client can fall back to a normal login at once.
//!
//! Only `GET` responses with status 200, `text/html`, no `Content-Encoding`
//! and no `Content-Range` are written into; the request reaches your handler
//! without `Accept-Encoding`, `Range` and conditional headers (put compression
//! *outside* this layer). Injected responses lose `Content-Length`, `ETag` and
//! `Last-Modified` and get `Cache-Control: no-store`. `HEAD` gets the same
//! headers without a handshake. For any other response on an injection route
//! the handshake is **cancelled**: dropped mid-flight, and the half-made session
//! gets one best-effort `terminate` (XEP-0124 §12); so does a session it had
//! already finished (at most 32 in flight; beyond that it expires at the CM
//! after its `inactivity`). UTF-16 pages are not written into.
//!
//! Across page views, with [`PrebindLayer::reuse_cookie`]: a page whose
//! script keeps its session in `sessionStorage` sets that cookie when the tab
//! navigates, and the next page gets `{"reuse":true,"jid":…,"bosh_service_url":…}`
//! instead of a new session, then re-attaches to the one it kept (the README's
//! "Sessions across page views" has the page side).
//!
//! [`inject_prefix`]: PrebindLayer::inject_prefix
//! [`inject_when`]: PrebindLayer::inject_when
//!
//! # Who logs in
//!
//! Chosen per request by a [`CredentialsSource`]: a fixed [`Credentials`]
//! (anonymous on a domain, or an account), [`FromExtensions`] (your auth
//! middleware inserts a [`Credentials`] into the request extensions), or an
//! async closure ([`PrebindLayer::credentials_fn`], given the request head,
//! [`http::request::Parts`], re-exported as `bosh_prebind::http`); guests can
//! fall back to an anonymous session
//! ([`PrebindLayer::credentials_from_extensions_or_anonymous`]). Your auth
//! middleware must run *before* this layer (be outside it: in axum,
//! `.layer(prebind).layer(auth)`), or it has not inserted anything yet when
//! the layer looks. Accounts use the
//! strongest of SCRAM-SHA-256, SCRAM-SHA-1 and PLAIN that the server offers;
//! anonymous sessions use ANONYMOUS. Sessions are only opened on allowed
//! domains ([`PrebindLayer::allow_domain`]; fixed credentials allow their own).
//!
//! # SASL2, Bind 2 and FAST
//!
//! Where the session-creation features offer SASL2 (XEP-0388) with Bind 2
//! (XEP-0386) inline, as Prosody 13 with prosody-modules' `mod_sasl2`,
//! `mod_sasl2_bind2` and `mod_sasl2_fast` does, the login authenticates and
//! binds in one exchange: 2 round trips (ANONYMOUS, PLAIN, FAST) or 3
//! (SCRAM) instead of 4 / 4 / 5. It is never sent blind; elsewhere the
//! classic login runs unchanged, and [`PrebindLayer::sasl2`]`(false)` forces it.
//!
//! FAST tokens (XEP-0484) replace the password after one login:
//! [`Credentials::request_fast_token`] asks for one,
//! [`PrebindSession::fast_token`] and [`PrebindLayer::on_fast_token`] hand
//! out every token a login returns (store the newest: servers rotate them),
//! and [`Credentials::fast_token`] logs in with it. A refused token is
//! [`handshake::HandshakeError::FastTokenRefused`] and ends that BOSH session:
//! log in with the password on a new one. Over BOSH only `HT-SHA-256-NONE`
//! exists (no TLS channel binding through HTTP).
//!
//! # Transport
//!
//! BOSH requests go through any tower `Service<http::Request<Full<Bytes>>>`
//! ([`BoshTransport`]); by default a pooled hyper-util client
//! ([`HttpTransport`], feature `client`) that speaks HTTPS too (feature
//! `rustls`, on by default: rustls with the Mozilla roots; `native-roots`
//! adds the OS store). Certificates are always verified; trust a private CA
//! with [`transport::HttpTransportBuilder::ca_file`]. Without `rustls`, an
//! `https://` [`BoshUrl`] is refused when it is parsed. Each request has a
//! timeout, the handshake a deadline and responses a size cap.
//!
//! # Layers of the crate
//!
//! The protocol core is sans-IO ([`protocol`]: [`bosh`] is the wire format,
//! [`handshake`] the login state machine: feed a response, get the next
//! request) and so is the HTML scanner ([`html::scanner`], also at
//! [`inject`]); they never touch a socket. The driver runs the handshake over
//! the [`transport`]; the middleware classifies requests and answers.
//! ARCHITECTURE.md in the repository is the map.
//!
//! # Limits
//!
//! Request bodies and CM responses are capped, each CM request has a timeout
//! and each handshake a deadline, handshakes in progress are capped
//! ([`PrebindLayer::max_concurrent_handshakes`]: beyond it `503` with
//! `Retry-After`), and prebinds from other sites are refused. SCRAM salted
//! passwords are cached across logins ([`ScramCache`]).
//!
//! # Warm pool
//!
//! With a fixed identity, [`PrebindLayer::pool`] keeps sessions bound ahead
//! of demand, so the prebind path and pages take one with no CM round trip;
//! its size follows demand, a session is handed out only below half the
//! CM's `inactivity` (XEP-0124 §7) and is terminated otherwise (§12).
//! [`PrebindLayer::pool_handle`] gives its [`PoolStats`] and
//! [`PoolHandle::shutdown`].
//!
//! # Same-origin BOSH
//!
//! [`PrebindLayer::bosh_passthrough`] forwards BOSH requests on one path to
//! the configured CM, so pages attach on their own origin without CORS. The
//! CM's answers are streamed whatever their size (a vCard photo, a roster, a
//! MAM page); the browser's request bodies have their own cap (1 MiB).
//!
//! # Several connection managers
//!
//! The layer keeps no session state: sessions live in the CM, each on the
//! node that made it. Behind a load balancer, give [`PrebindLayer::new`] its
//! URL; with no balancer, [`PrebindLayer::new_cluster`] takes the nodes
//! ([`BoshNode`]): prebinds go round-robin to healthy nodes, a node that
//! cannot be reached is skipped for a back-off and the prebind is made at
//! another node (never once a sid exists), and each session's
//! `bosh_service_url` names its node.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod capped_body;
mod driver;
mod error;
pub mod html;
mod middleware;
pub mod protocol;
mod telemetry;
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test_util;
pub mod transport;

/// The `http` crate this one is built on (its 1.x), re-exported so that
/// credentials sources and predicates can name
/// [`http::request::Parts`] without a dependency of their own.
pub use http;

// The sans-IO modules at their historical paths.
pub use html::scanner as inject;
pub use protocol::{bosh, handshake};

pub use error::PrebindError;
pub use html::snippet::SnippetContext;
pub use middleware::body::PrebindBody;
pub use middleware::cluster::{BoshNode, ClusterError};
pub use middleware::credentials_source::{
    CredentialsFn, CredentialsFuture, CredentialsNow, CredentialsSource, FromExtensions,
    FromExtensionsOr,
};
pub use middleware::future::ResponseFuture;
pub use middleware::layer::PrebindLayer;
pub use middleware::pool::{PoolHandle, PoolStats};
pub use middleware::prebind_request::PrebindRequest;
pub use middleware::service::Prebind;
pub use protocol::credentials::{Credentials, InvalidJid, Mechanism};
pub use protocol::fast::FastToken;
pub use protocol::handshake::PrebindSession;
pub use protocol::sasl::SaslError;
pub use protocol::scram_cache::ScramCache;
pub use telemetry::names as metrics;
pub use telemetry::{Outcome, PathKind};
pub use transport::{BoshTransport, BoshUrl, BoxError};
#[cfg(feature = "client")]
pub use transport::{HttpTransport, http_transport};

/// The README's Rust examples, compiled as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
