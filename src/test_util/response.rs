//! Turning the fake's decision for one request into an HTTP response.

use http::{Response, StatusCode, header};

use super::body::ChunkedBody;
use super::counters::InFlight;
use super::fault::Fault;
use super::wire::{NS_HTTPBIND, envelope, sasl_failure, terminate};
use crate::BoxError;

/// What the fake does with one request.
#[derive(Debug)]
pub(super) enum Reply {
    /// The normal answer.
    Xml(String),
    /// A fault instead of `normal`.
    Fault { fault: Fault, normal: String },
}

fn xml(status: StatusCode, body: ChunkedBody) -> Response<ChunkedBody> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    response
}

impl Reply {
    /// The response, or the transport error; never returns for
    /// [`Fault::NoAnswer`]. `guard` lives as long as the future, then as
    /// long as the response body.
    pub(super) async fn into_response(
        self,
        sid: &str,
        guard: InFlight,
    ) -> Result<Response<ChunkedBody>, BoxError> {
        let response = match self {
            Reply::Xml(answer) => Ok(xml(StatusCode::OK, ChunkedBody::full(answer))),
            Reply::Fault { fault, normal } => fault_response(fault, &normal, sid).await,
        };
        response.map(|response| response.map(|body| body.guarded(guard)))
    }
}

async fn fault_response(
    fault: Fault,
    normal: &str,
    sid: &str,
) -> Result<Response<ChunkedBody>, BoxError> {
    let text = |text: String| Ok(xml(StatusCode::OK, ChunkedBody::full(text)));
    match fault {
        Fault::Refused => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionRefused,
            "tcp connect error: Connection refused (os error 111)",
        )
        .into()),
        Fault::Status(status) => {
            let mut response = xml(
                status,
                ChunkedBody::full("<html><body>Internal Server Error</body></html>"),
            );
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("text/html"),
            );
            Ok(response)
        }
        Fault::Terminate(condition) => text(terminate(&condition)),
        Fault::SaslFailure(condition) => text(envelope(sid, &sasl_failure(&condition))),
        Fault::Malformed => text("this is not XML at all".to_owned()),
        Fault::Truncated => {
            let mut cut = normal.len() / 2;
            while !normal.is_char_boundary(cut) {
                cut -= 1;
            }
            text(normal[..cut].to_owned())
        }
        Fault::Body(body) => text(body),
        Fault::NoAnswer => std::future::pending().await,
        Fault::BodyNeverEnds => Ok(xml(
            StatusCode::OK,
            ChunkedBody::hanging([format!("<body xmlns='{NS_HTTPBIND}' sid='{sid}'>")]),
        )),
        Fault::Oversize { declared } => {
            let padding = " ".repeat(8192);
            let answer =
                format!("<body xmlns='{NS_HTTPBIND}' sid='{sid}' wait='59'>{padding}</body>");
            if declared {
                let length = answer.len();
                let mut response = xml(StatusCode::OK, ChunkedBody::full(answer));
                response
                    .headers_mut()
                    .insert(header::CONTENT_LENGTH, length.into());
                return Ok(response);
            }
            let chunks: Vec<Vec<u8>> = answer.as_bytes().chunks(512).map(<[u8]>::to_vec).collect();
            Ok(xml(StatusCode::OK, ChunkedBody::new(chunks)))
        }
    }
}
