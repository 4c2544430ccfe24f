//! The prebind path (docs/design.md §3.1-3.3): reads the request, checks it, runs the
//! handshake, and answers in the client's format.
//!
//! - `POST` with `<body to rid wait hold/>` (the classic Strophe.js flow)
//!   gets a BOSH-shaped XML `<body/>` whose `rid` is the **last used** RID.
//! - `GET` (Converse.js `prebind_url`, `fetch`) gets JSON whose `rid` is the
//!   **next** RID.
//!
//! Everything that can be refused is refused before anything is sent to the
//! connection manager.

use std::fmt::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body::Body;
use http_body_util::Full;

use crate::capped_body::{CappedReadError, read_capped};
use crate::error::PrebindError;
use crate::html::session_json::{error_json, session_json};
use crate::middleware::config::Config;
use crate::middleware::establish::establish;
use crate::middleware::prebind_request::{PrebindRequest, check_to};
use crate::middleware::same_site::{
    allow_cors, allowed_cors_origin, check_same_site, preflight, request_host,
};
use crate::protocol::bosh::{NS_BIND, NS_CLIENT, NS_HTTPBIND, escape};
use crate::protocol::handshake::PrebindSession;
use crate::telemetry::{PathKind, report};
use crate::transport::{BoshTransport, BoxError};

/// The challenge of a `401` (no credentials for this request): the site's
/// own login is what is missing (RFC 9110 §11.6.1 requires a challenge).
pub(crate) const WWW_AUTHENTICATE: &str = "XMPP-Prebind realm=\"xmpp-prebind\"";

/// The answer format follows the request: XML for POST, JSON otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Xml,
    Json,
}

/// Answers one request on the prebind path.
pub(crate) async fn answer<B, T>(
    config: Arc<Config>,
    transport: T,
    request: Request<B>,
) -> Response<Full<Bytes>>
where
    B: Body<Error: Into<BoxError>>,
    T: BoshTransport,
{
    let format = if request.method() == Method::POST {
        Format::Xml
    } else {
        Format::Json
    };
    let started = tokio::time::Instant::now();
    let path = if format == Format::Xml {
        PathKind::Post
    } else {
        PathKind::Get
    };
    let cors = allowed_cors_origin(request.headers(), &config.allowed_origins).cloned();
    if request.method() == Method::OPTIONS {
        if let Some(origin) = cors {
            return preflight(origin);
        }
    }
    let outcome = prebind(&config, transport, request).await;
    report(
        config.on_outcome.as_deref(),
        &config.warnings,
        &config.cm_for_logs(),
        path,
        outcome.as_ref().map(|(session, _)| session),
        started.elapsed(),
    );
    let mut response = match outcome {
        Ok((session, node)) => success(&config, format, &session, node),
        Err(error) => failure(format, error),
    };
    if let Some(origin) = cors {
        allow_cors(response.headers_mut(), origin);
    }
    response
}

async fn prebind<B, T>(
    config: &Config,
    transport: T,
    request: Request<B>,
) -> Result<(PrebindSession, usize), PrebindError>
where
    B: Body<Error: Into<BoxError>>,
    T: BoshTransport,
{
    let (parts, body) = request.into_parts();
    if parts.method != Method::GET && parts.method != Method::POST {
        return Err(PrebindError::MethodNotAllowed);
    }
    check_same_site(
        &parts.headers,
        request_host(&parts),
        &config.allowed_origins,
    )?;
    let asked = if parts.method == Method::POST {
        let typed = check_content_type(&parts.headers)?;
        // A slow client must not hold the request open forever.
        let read = read_body(&parts.headers, body, config.max_request_body);
        let bytes = tokio::time::timeout(config.client.request_timeout, read)
            .await
            .map_err(|_| PrebindError::RequestTimeout)??;
        if !typed && !bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(PrebindError::UnsupportedMediaType);
        }
        PrebindRequest::parse(&bytes)?
    } else {
        PrebindRequest::default()
    };
    let to = asked.to.as_deref().map(check_to).transpose()?;
    if let Some(to) = &to {
        if !config.is_allowed(to) {
            return Err(PrebindError::DomainNotAllowed(to.clone()));
        }
    }
    let credentials = config
        .credentials
        .credentials(&parts)
        .await
        .ok_or(PrebindError::NoCredentials)?;
    establish(config, transport, credentials, to, &asked).await
}

/// Ok(true) for an XML type, Ok(false) for none (allowed for an empty body,
/// which asks for all defaults).
fn check_content_type(headers: &HeaderMap) -> Result<bool, PrebindError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(false);
    };
    let essence = value
        .to_str()
        .ok()
        .and_then(|v| v.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    if essence.eq_ignore_ascii_case("text/xml") || essence.eq_ignore_ascii_case("application/xml") {
        Ok(true)
    } else {
        Err(PrebindError::UnsupportedMediaType)
    }
}

async fn read_body<B: Body<Error: Into<BoxError>>>(
    headers: &HeaderMap,
    body: B,
    limit: usize,
) -> Result<Bytes, PrebindError> {
    read_capped(headers, body, limit)
        .await
        .map_err(|error| match error {
            CappedReadError::TooLarge => PrebindError::PayloadTooLarge(limit),
            CappedReadError::Failed(_) => {
                PrebindError::BadRequest("the request body could not be read".into())
            }
        })
}

fn success(
    config: &Config,
    format: Format,
    session: &PrebindSession,
    node: usize,
) -> Response<Full<Bytes>> {
    let (content_type, body) = match format {
        Format::Xml => ("text/xml; charset=utf-8", xml_success(session)),
        Format::Json => (
            "application/json",
            session_json(session, config.bosh_service_url(node)),
        ),
    };
    let mut response = respond(StatusCode::OK, content_type, body);
    // For outer middleware (metrics, audit); its Debug hides the sid.
    response.extensions_mut().insert(session.clone());
    response
}

/// The seed-era answer: `rid` is the last RID used; the page calls
/// `attach(jid, sid, rid + 1)`. Carries the bind result like the CM's own
/// response did.
fn xml_success(session: &PrebindSession) -> String {
    let jid = escape(session.jid.as_str());
    let mut out = format!(
        "<body xmlns='{NS_HTTPBIND}' jid='{jid}' sid='{}' rid='{}' wait='{}' hold='{}'",
        escape(session.sid.as_str()),
        session.last_rid,
        session.wait,
        session.hold,
    );
    for (name, value) in [
        ("requests", session.requests),
        ("inactivity", session.inactivity),
        ("polling", session.polling),
        ("maxpause", session.maxpause),
    ] {
        if let Some(value) = value {
            let _ = write!(out, " {name}='{value}'");
        }
    }
    let _ = write!(
        out,
        "><iq xmlns='{NS_CLIENT}' type='result' id='bind_1'><bind xmlns='{NS_BIND}'>\
         <jid>{jid}</jid></bind></iq></body>"
    );
    out
}

fn failure(format: Format, error: PrebindError) -> Response<Full<Bytes>> {
    let (content_type, body) = match format {
        Format::Xml => (
            "text/xml; charset=utf-8",
            format!(
                "<body xmlns='{NS_HTTPBIND}' type='terminate' condition='{}'/>",
                escape(error.condition())
            ),
        ),
        Format::Json => ("application/json", error_json(&error)),
    };
    let mut response = respond(error.status(), content_type, body);
    let headers = response.headers_mut();
    match error {
        PrebindError::MethodNotAllowed => {
            headers.insert(header::ALLOW, HeaderValue::from_static("GET, POST"));
        }
        PrebindError::Overloaded => {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        PrebindError::NoCredentials => {
            // RFC 9110 §11.6.1: a 401 carries a challenge. What is missing
            // is the site's own login (its cookie or session), not an HTTP
            // credential: a scheme of our own, which no browser answers with
            // a login dialog.
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(WWW_AUTHENTICATE),
            );
        }
        _ => {}
    }
    response.extensions_mut().insert(error);
    response
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A session id is a bearer credential: never store it anywhere.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hostile_cm_cannot_break_out_of_the_xml_or_json_answer() {
        let session = PrebindSession {
            jid: "x@d/'\"><iq type='set'/><!--".into(),
            sid: "s' evil='1\u{2028}</script>".into(),
            last_rid: 10,
            wait: 59,
            hold: 1,
            requests: None,
            inactivity: None,
            polling: None,
            maxpause: None,
            round_trips: 4,
            mechanism: "ANONYMOUS",
            fast_token: None,
        };
        let answer = crate::protocol::xml::parse(xml_success(&session).as_bytes()).unwrap();
        assert_eq!(answer.attr("jid"), Some(session.jid.as_str()));
        assert_eq!(answer.attr("sid"), Some(session.sid.as_str()));
        assert_eq!(answer.attr("evil"), None);
        assert_eq!(answer.children.len(), 1, "only the bind result");
        let json = session_json(&session, "/http-bind");
        for forbidden in ["</script>", "<!--", "\u{2028}", "<iq"] {
            assert!(!json.contains(forbidden), "{forbidden} in {json}");
        }
    }
}
