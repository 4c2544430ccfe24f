//! Something other than the normal answer, for one request.

use http::StatusCode;

/// What the fake does instead of answering normally, at the request chosen
/// with [`FakeCmBuilder::fault_at`](super::FakeCmBuilder::fault_at) or at
/// every request ([`FakeCmBuilder::fault_always`](super::FakeCmBuilder::fault_always)).
///
/// The request is still checked and recorded; the session does not advance
/// (an `<auth/>` answered with a fault authenticates nothing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// The transport fails as a refused TCP connection does (over TCP: the
    /// connection is closed without an answer).
    Refused,
    /// This HTTP status, with an HTML body.
    Status(StatusCode),
    /// `<body type='terminate' condition='…'/>` (XEP-0124 §17.2).
    Terminate(String),
    /// `<failure><condition/></failure>` in place of the answer: a SASL
    /// failure at whatever step this is.
    SaslFailure(String),
    /// `this is not XML at all`, with status 200.
    Malformed,
    /// The normal answer cut in half.
    Truncated,
    /// This body instead of the normal answer, with status 200.
    Body(String),
    /// The response never comes.
    NoAnswer,
    /// Headers and a first chunk come, the rest of the body never does.
    BodyNeverEnds,
    /// A well-formed answer padded to 8 KiB, with `Content-Length` when
    /// `declared`, else streamed in 512-byte chunks.
    Oversize {
        /// Whether `Content-Length` says how large it is.
        declared: bool,
    },
}

impl Fault {
    /// [`Fault::Terminate`] with `condition`.
    pub fn terminate(condition: impl Into<String>) -> Self {
        Fault::Terminate(condition.into())
    }

    /// [`Fault::SaslFailure`] with `condition`.
    pub fn sasl_failure(condition: impl Into<String>) -> Self {
        Fault::SaslFailure(condition.into())
    }

    /// [`Fault::Body`] with `xml`.
    pub fn body(xml: impl Into<String>) -> Self {
        Fault::Body(xml.into())
    }
}
