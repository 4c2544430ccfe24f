//! Every way a prebind can fail, with the HTTP status and condition the client
//! is told (docs/design.md §3.3): the status says who failed, the condition what.

use http::StatusCode;

use crate::protocol::handshake::HandshakeError;

/// Why a prebind failed.
///
/// Messages never contain passwords, SASL data or session ids. The error is
/// also put into the extensions of the answer, so outer middleware can log or
/// count failures by kind.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PrebindError {
    /// The prebind request is malformed (bad XML, bad numbers, bad `to`).
    #[error("bad prebind request: {0}")]
    BadRequest(String),
    /// The prebind request used a method other than GET or POST.
    #[error("method not allowed on the prebind path: use GET or POST")]
    MethodNotAllowed,
    /// The POST body is not XML.
    #[error("unsupported content type: send text/xml or application/xml")]
    UnsupportedMediaType,
    /// The request body did not arrive within the request timeout.
    #[error("the request body did not arrive in time")]
    RequestTimeout,
    /// The request body is over the configured cap.
    #[error("request body over the {0}-byte limit")]
    PayloadTooLarge(usize),
    /// The domain is not on the allow-list.
    #[error("domain {0:?} is not served here")]
    DomainNotAllowed(String),
    /// The request came from another site (`Sec-Fetch-Site` / `Origin`).
    #[error("cross-site prebind requests are refused")]
    CrossSite,
    /// Nobody to log in for this request.
    #[error("no credentials for this request")]
    NoCredentials,
    /// Too many handshakes in progress.
    #[error("too many prebinds in progress, retry shortly")]
    Overloaded,
    /// The CM could not be reached (connection refused, reset, DNS, TLS).
    #[error("connection manager unreachable: {0}")]
    Unreachable(String),
    /// The CM answered with an HTTP error status.
    #[error("connection manager answered HTTP {0}")]
    HttpStatus(StatusCode),
    /// The CM's response body is over the configured cap.
    #[error("connection manager response over the {0}-byte limit")]
    ResponseTooLarge(usize),
    /// A request to the CM, or the whole handshake, ran out of time.
    #[error("connection manager too slow: {0}")]
    Timeout(&'static str),
    /// The handshake failed: the CM refused, terminated or sent garbage.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
}

impl PrebindError {
    /// The HTTP status of the prebind answer.
    pub fn status(&self) -> StatusCode {
        match self {
            PrebindError::BadRequest(_) => StatusCode::BAD_REQUEST,
            PrebindError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            PrebindError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            PrebindError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            PrebindError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            PrebindError::DomainNotAllowed(_) | PrebindError::CrossSite => StatusCode::FORBIDDEN,
            PrebindError::NoCredentials => StatusCode::UNAUTHORIZED,
            PrebindError::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            PrebindError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            PrebindError::Unreachable(_)
            | PrebindError::HttpStatus(_)
            | PrebindError::ResponseTooLarge(_)
            | PrebindError::Handshake(_) => StatusCode::BAD_GATEWAY,
        }
    }

    /// The condition: a XEP-0124 §17.2 condition, the CM's own condition
    /// for `terminate`, or the SASL condition of a refused login.
    pub fn condition(&self) -> &str {
        match self {
            PrebindError::BadRequest(_)
            | PrebindError::MethodNotAllowed
            | PrebindError::UnsupportedMediaType
            | PrebindError::PayloadTooLarge(_)
            | PrebindError::RequestTimeout => "bad-request",
            PrebindError::DomainNotAllowed(_) => "host-unknown",
            PrebindError::CrossSite | PrebindError::Overloaded => "policy-violation",
            PrebindError::NoCredentials => "not-authorized",
            PrebindError::Unreachable(_)
            | PrebindError::HttpStatus(_)
            | PrebindError::ResponseTooLarge(_)
            | PrebindError::Timeout(_) => "remote-connection-failed",
            PrebindError::Handshake(e) => e.condition(),
        }
    }

    /// The message the client is shown: like `Display`, but without
    /// transport details (internal host names, addresses) for an unreachable CM.
    pub fn public_message(&self) -> String {
        match self {
            PrebindError::Unreachable(_) => "connection manager unreachable".to_owned(),
            other => other.to_string(),
        }
    }

    /// True when the request itself was at fault (nothing was sent to the CM).
    pub fn is_client_error(&self) -> bool {
        self.status().is_client_error()
    }
}
