//! Same-origin BOSH (docs/design.md §3.5): the browser attaches at a path of the web
//! app (`/http-bind`) and the layer forwards its requests, byte for byte, to
//! the one configured connection manager through the same transport. Nothing
//! else is forwarded anywhere: the target is fixed, the path is exact, the
//! method is POST, the body is capped.
//!
//! Each BOSH response is one XML document the client parses whole, so it is
//! read fully (within the cap) before it is answered: a CM failing mid-body
//! then gets a clean 502 instead of a truncated document.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};

use crate::middleware::config::Config;
use crate::transport::{BoshTransport, BoxError};

/// Forwards one request to the CM and answers with its response.
pub(crate) async fn forward<B, T>(
    config: &Config,
    mut transport: T,
    request: Request<B>,
) -> Response<Full<Bytes>>
where
    B: Body<Error: Into<BoxError>>,
    T: BoshTransport,
{
    if request.method() != Method::POST {
        let mut response = terminate(StatusCode::METHOD_NOT_ALLOWED, "bad-request");
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    let limit = config.client.max_response_body;
    let (parts, body) = request.into_parts();
    // Reading the browser's body is bounded like a prebind request.
    let read = Limited::new(body, limit).collect();
    let body = match tokio::time::timeout(config.client.request_timeout, read).await {
        Ok(Ok(collected)) => collected.to_bytes(),
        Ok(Err(error)) if error.is::<LengthLimitError>() => {
            return terminate(StatusCode::PAYLOAD_TOO_LARGE, "bad-request");
        }
        Ok(Err(_)) => return terminate(StatusCode::BAD_REQUEST, "bad-request"),
        Err(_) => return terminate(StatusCode::REQUEST_TIMEOUT, "bad-request"),
    };
    let mut outgoing = Request::new(Full::new(body));
    *outgoing.method_mut() = Method::POST;
    *outgoing.uri_mut() = config.client.bosh_url.clone();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("text/xml; charset=utf-8"));
    outgoing
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);

    // The CM may hold a request for up to `wait` seconds (XEP-0124 §7.4):
    // allow that plus the ordinary request timeout.
    let timeout =
        std::time::Duration::from_secs(config.max_wait.into()) + config.client.request_timeout;
    let exchange = async {
        std::future::poll_fn(|cx| transport.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        let response = transport.call(outgoing).await.map_err(Into::into)?;
        let (head, body) = response.into_parts();
        let body = Limited::new(body, limit).collect().await?.to_bytes();
        Ok::<_, BoxError>((head, body))
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok((head, body))) => {
            let mut response = Response::new(Full::new(body));
            *response.status_mut() = head.status;
            if let Some(content_type) = head.headers.get(header::CONTENT_TYPE) {
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, content_type.clone());
            }
            no_store(response)
        }
        Ok(Err(error)) => {
            tracing::warn!(error = %error, "BOSH pass-through to the connection manager failed");
            terminate(StatusCode::BAD_GATEWAY, "remote-connection-failed")
        }
        Err(_) => terminate(StatusCode::GATEWAY_TIMEOUT, "remote-connection-failed"),
    }
}

/// A BOSH terminate body (XEP-0124 §17.2), which every client understands.
fn terminate(status: StatusCode, condition: &'static str) -> Response<Full<Bytes>> {
    let body = format!(
        "<body xmlns='{}' type='terminate' condition='{condition}'/>",
        crate::protocol::bosh::NS_HTTPBIND
    );
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    no_store(response)
}

fn no_store(mut response: Response<Full<Bytes>>) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
