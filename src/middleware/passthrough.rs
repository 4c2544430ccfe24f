//! Same-origin BOSH (docs/design.md §3.5): the browser attaches at a path of the web
//! app (`/http-bind`) and the layer forwards its requests, byte for byte, to
//! a configured connection manager through the same transport. Nothing
//! else is forwarded anywhere: the targets are fixed, the paths are exact
//! (with several nodes, `/http-bind/{index}` names the node that owns the
//! session), the method is POST, the request body is capped.
//!
//! Answers are streamed, not buffered: ordinary chat traffic (a vCard photo,
//! a roster, a MAM page) can be far larger than any handshake answer. See
//! [`ForwardedBody`] for their limits.

use bytes::{Buf, Bytes};
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};

use crate::capped_body::{CappedReadError, read_capped};
use crate::middleware::config::Config;
use crate::middleware::forwarded_body::ForwardedBody;
use crate::transport::bosh_url::UriForLogs;
use crate::transport::{BoshTransport, BoxError};

/// Forwards one request to the CM of node `node` and answers with its response.
pub(crate) async fn forward<B, T>(
    config: &Config,
    mut transport: T,
    node: usize,
    request: Request<B>,
) -> Response<ForwardedBody>
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
    let limits = &config.passthrough;
    let (parts, body) = request.into_parts();
    // The transport takes whole bodies: the browser's is read, within its cap.
    let read = read_capped(&parts.headers, body, limits.max_request_body);
    let body = match tokio::time::timeout(config.client.request_timeout, read).await {
        Ok(Ok(body)) => body,
        Ok(Err(CappedReadError::TooLarge)) => {
            return terminate(StatusCode::PAYLOAD_TOO_LARGE, "bad-request");
        }
        Ok(Err(CappedReadError::Failed(_))) => {
            return terminate(StatusCode::BAD_REQUEST, "bad-request");
        }
        Err(_) => return terminate(StatusCode::REQUEST_TIMEOUT, "bad-request"),
    };
    crate::telemetry::passthrough_bytes(crate::telemetry::Direction::ToCm, body.len());
    let mut outgoing = Request::new(Full::new(body));
    *outgoing.method_mut() = Method::POST;
    let bosh_url = &config.cluster.node(node).url;
    *outgoing.uri_mut() = bosh_url.clone();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or(HeaderValue::from_static("text/xml; charset=utf-8"));
    outgoing
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    if let Some(client_ip) = limits.client_ip.as_ref().and_then(|f| f(&parts)) {
        // RFC 7239 §5.2's de-facto predecessor: append to what a proxy in
        // front of us already said, so the CM's `trusted_proxies` logic
        // sees the chain.
        let chain = match parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
        {
            Some(earlier) => format!("{earlier}, {client_ip}"),
            None => client_ip.to_string(),
        };
        if let Ok(value) = HeaderValue::try_from(chain) {
            outgoing.headers_mut().insert("x-forwarded-for", value);
        }
    }

    // The CM may hold a request for up to `wait` seconds (XEP-0124 §7.4):
    // allow that plus the ordinary request timeout.
    // Saturating: a `request_timeout(Duration::MAX)` means no timeout.
    let timeout = std::time::Duration::from_secs(config.max_wait.into())
        .saturating_add(config.client.request_timeout);
    let exchange = async {
        std::future::poll_fn(|cx| transport.poll_ready(cx))
            .await
            .map_err(Into::into)?;
        transport.call(outgoing).await.map_err(Into::into)
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(Ok(answer)) => {
            let (head, body) = answer.into_parts();
            // `copy_to_bytes` of `Bytes` (hyper's data) is a cheap split.
            let body = body
                .map_frame(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
                .map_err(Into::into)
                .boxed_unsync();
            let body = ForwardedBody::streaming(
                body,
                config.client.request_timeout,
                limits.max_response_body,
            );
            let mut response = Response::new(body);
            *response.status_mut() = head.status;
            for name in [header::CONTENT_TYPE, header::CONTENT_LENGTH] {
                if let Some(value) = head.headers.get(&name) {
                    response.headers_mut().insert(name, value.clone());
                }
            }
            no_store(response)
        }
        Ok(Err(error)) => {
            let error: BoxError = error;
            tracing::warn!(
                bosh_url = %UriForLogs(bosh_url),
                error = %crate::driver::error_chain(&*error),
                "BOSH pass-through to the connection manager failed"
            );
            terminate(StatusCode::BAD_GATEWAY, "remote-connection-failed")
        }
        Err(_) => terminate(StatusCode::GATEWAY_TIMEOUT, "remote-connection-failed"),
    }
}

/// A BOSH terminate body (XEP-0124 §17.2), which every client understands.
fn terminate(status: StatusCode, condition: &'static str) -> Response<ForwardedBody> {
    let body = format!(
        "<body xmlns='{}' type='terminate' condition='{condition}'/>",
        crate::protocol::bosh::NS_HTTPBIND
    );
    let mut response = Response::new(ForwardedBody::made(Full::new(Bytes::from(body))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/xml; charset=utf-8"),
    );
    no_store(response)
}

fn no_store(mut response: Response<ForwardedBody>) -> Response<ForwardedBody> {
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
