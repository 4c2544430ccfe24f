//! A fake connection manager (CM) for testing code that uses this crate,
//! and for this crate's own tests and benchmarks (feature `test-util`, off
//! by default; enable it in your `[dev-dependencies]`).
//!
//! [`FakeCm`] is a transport for [`PrebindLayer`](crate::PrebindLayer): a
//! tower `Service<http::Request<Full<Bytes>>>` answering in memory, no
//! sockets, like Prosody 0.12 does. It can also be served over real TCP
//! ([`FakeCm::spawn_tcp`]).
//!
//! It is strict, so tests stay honest: every request is checked against
//! XEP-0124 / XEP-0206 (a POST to the configured URL, `text/xml`, exactly
//! the next RID of a live session, the creation attributes, one payload per
//! login step, nothing before the features came, no second `<auth/>`, …),
//! and a violation panics inside the transport call, failing the test that
//! caused it; [`FakeCm::violations`] lists them too. The SASL server sides
//! are real: ANONYMOUS, PLAIN (checks the password), SCRAM-SHA-1 and
//! SCRAM-SHA-256 (verify the client proof per RFC 5802, prove the server
//! knows the password).
//!
//! What it does is chosen on a [`FakeCmBuilder`]: domain, account and
//! mechanisms, stream features in the responses or late
//! ([`StreamFeatures`]), the session IQ ([`SessionFeature`]), a [`Fault`]
//! at one request or all, a delay, held answers for concurrency tests. What
//! it saw is there to assert: every request ([`FakeCm::requests`],
//! [`FakeCm::rids`]), terminations, sessions, counters.
//!
//! ```
//! use std::convert::Infallible;
//!
//! use bosh_prebind::Credentials;
//! use bosh_prebind::test_util::{FakeCm, Fault};
//! use bytes::Bytes;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let app = service_fn(|_: Request<Full<Bytes>>| async {
//!     Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
//! });
//! let prebind = || Request::get("/prebind").body(Full::<Bytes>::default()).unwrap();
//!
//! // An anonymous login on anon.localhost: four requests, RIDs in sequence.
//! let cm = FakeCm::new();
//! let service = cm
//!     .layer()
//!     .credentials(Credentials::anonymous("anon.localhost"))
//!     .layer(app.clone());
//! let response = service.oneshot(prebind()).await.unwrap();
//! assert_eq!(response.status(), StatusCode::OK);
//! let rids = cm.rids();
//! assert_eq!(rids.len(), 4);
//! assert!(rids.windows(2).all(|w| w[1] == w[0] + 1));
//! assert_eq!(cm.mechanism().as_deref(), Some("ANONYMOUS"));
//!
//! // The CM refuses the connection: 502, and only one request was tried.
//! let cm = FakeCm::builder().fault_always(Fault::Refused).build();
//! let service = cm
//!     .layer()
//!     .credentials(Credentials::anonymous("anon.localhost"))
//!     .layer(app);
//! let response = service.oneshot(prebind()).await.unwrap();
//! assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
//! assert_eq!(cm.requests().len(), 1);
//! # }
//! ```

mod body;
mod builder;
mod counters;
mod element;
mod fake_cm;
mod fault;
mod features;
mod gate;
mod record;
mod response;
mod scram;
mod session;
mod tcp;
mod wire;

pub use body::ChunkedBody;
pub use builder::{DEFAULT_DOMAIN, DEFAULT_JID, DEFAULT_SID, DEFAULT_URL, FakeCmBuilder};
pub use element::Element;
pub use fake_cm::FakeCm;
pub use fault::Fault;
pub use features::{SessionFeature, StreamFeatures};
pub use record::{Recorded, SessionInfo, Termination};
