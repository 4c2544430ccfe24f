//! The prebind path (DESIGN §3.1-3.3): reads the request, checks it, runs the
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
use http_body_util::{BodyExt, Full, Limited};

use crate::bosh::{NS_BIND, NS_CLIENT, NS_HTTPBIND, escape};
use crate::client::{self, BoshTransport, BoxError};
use crate::credentials::{Credentials, normalize_domain};
use crate::error::PrebindError;
use crate::handshake::{HandshakeConfig, PrebindSession};
use crate::json::JsonObject;
use crate::layer::Config;
use crate::snippet::{SnippetContext, SnippetFuture, default_snippet};
use crate::xml;

/// The answer format follows the request: XML for POST, JSON otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Xml,
    Json,
}

/// What a `POST` to the prebind path asked for: every attribute of
/// `<body xmlns='http://jabber.org/protocol/httpbind' to rid wait hold/>` is
/// optional (DESIGN §3.1). Public for custom endpoints and fuzzing.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrebindRequest {
    /// The XMPP domain (`to`), as sent (checked later against the allow-list).
    pub to: Option<String>,
    /// The first RID of the handshake, already checked to be in
    /// `1..=`[`HandshakeConfig::max_first_rid`].
    pub rid: Option<u64>,
    /// The `wait` asked for (clamped later).
    pub wait: Option<u64>,
    /// The `hold` asked for (clamped later).
    pub hold: Option<u64>,
}

impl PrebindRequest {
    /// Parses a request body; an empty body asks for all defaults. Errors
    /// are [`PrebindError::BadRequest`]. Children of `<body/>` are ignored:
    /// nothing from the browser is forwarded to the server.
    pub fn parse(body: &[u8]) -> Result<Self, PrebindError> {
        parse_request(body)
    }
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
    let cors = allowed_cors_origin(request.headers(), &config.allowed_origins).cloned();
    if request.method() == Method::OPTIONS {
        if let Some(origin) = cors {
            return preflight(origin);
        }
    }
    let mut response = match prebind(&config, transport, request).await {
        Ok(session) => success(&config, format, &session),
        Err(error) => {
            if error.is_client_error() {
                tracing::debug!(%error, "prebind refused");
            } else {
                tracing::warn!(%error, "prebind failed");
            }
            failure(format, error)
        }
    };
    if let Some(origin) = cors {
        allow_cors(response.headers_mut(), origin);
    }
    response
}

/// A CORS preflight from an allowed origin (Fetch standard §3.2.2): the
/// browser asks before a `text/xml` POST.
fn preflight(origin: HeaderValue) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::default());
    *response.status_mut() = StatusCode::NO_CONTENT;
    let headers = response.headers_mut();
    allow_cors(headers, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type"),
    );
    headers.insert(
        header::ACCESS_CONTROL_MAX_AGE,
        HeaderValue::from_static("600"),
    );
    response
}

/// Names the one allowed origin, with credentials (it was allowed to make
/// credentialed prebinds), and varies caches by `Origin`.
fn allow_cors(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
        HeaderValue::from_static("true"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("Origin"));
}

async fn prebind<B, T>(
    config: &Config,
    transport: T,
    request: Request<B>,
) -> Result<PrebindSession, PrebindError>
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
        parse_request(&bytes)?
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

/// Checks the credentials' domain and runs the handshake.
async fn establish<T: BoshTransport>(
    config: &Config,
    transport: T,
    credentials: Credentials,
    to: Option<String>,
    asked: &PrebindRequest,
) -> Result<PrebindSession, PrebindError> {
    let domain = credentials.domain();
    if !config.is_allowed(domain) || to.as_deref().is_some_and(|to| to != domain) {
        return Err(PrebindError::DomainNotAllowed(
            to.unwrap_or_else(|| domain.to_owned()),
        ));
    }
    // Held until the handshake ends (or is dropped).
    let _permit = Arc::clone(&config.handshakes)
        .try_acquire_owned()
        .map_err(|_| PrebindError::Overloaded)?;
    let mut handshake = HandshakeConfig::new(credentials);
    handshake.first_rid = asked.rid;
    handshake.wait = clamp(asked.wait, config.default_wait, config.max_wait);
    handshake.hold = clamp(asked.hold, 1, config.max_hold);
    handshake.lang.clone_from(&config.lang);
    handshake.route.clone_from(&config.route);
    handshake.scram_cache.clone_from(&config.scram_cache);
    client::run(transport, &config.client, handshake).await
}

/// The snippet for a page: runs the handshake for the request's credentials
/// and renders the session or the error; `None` when there is nobody to log
/// in (the page is served as is).
pub(crate) fn page_snippet<T: BoshTransport>(
    config: Arc<Config>,
    transport: T,
    parts: &http::request::Parts,
) -> SnippetFuture {
    let credentials = config.credentials.credentials(parts);
    Box::pin(async move {
        let credentials = credentials.await?;
        let outcome = establish(
            &config,
            transport,
            credentials,
            None,
            &PrebindRequest::default(),
        )
        .await;
        let json = match &outcome {
            Ok(session) => json_success(&config, session),
            Err(error) => {
                tracing::warn!(%error, "prebind for a page failed; serving it with the error object");
                json_error(error)
            }
        };
        let pages = &config.pages;
        let markup = match &pages.renderer {
            Some(render) => render(SnippetContext {
                outcome: outcome.as_ref(),
                json: &json,
                bosh_service_url: config.bosh_service_url(),
            }),
            None => default_snippet(&pages.element_id, &json),
        };
        Some(Bytes::from(markup))
    })
}

/// A client's value clamped to `1..=max`, or the default.
fn clamp(value: Option<u64>, default: u32, max: u32) -> u32 {
    value
        .map_or(default, |v| v.clamp(1, u64::from(max)) as u32)
        .min(max)
}

/// Refuses prebinds started by another site (DESIGN §6): a page elsewhere
/// must not be able to spend our handshakes or learn a session made with the
/// visitor's cookies. `Sec-Fetch-Site` is trusted when present (browsers set
/// it and pages cannot); otherwise `Origin` must match `Host`.
fn check_same_site(
    headers: &HeaderMap,
    host: Option<&str>,
    allowed: &[String],
) -> Result<(), PrebindError> {
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let origin_allowed =
        || origin.is_some_and(|o| allowed.iter().any(|a| a.eq_ignore_ascii_case(o)));
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ if origin_allowed() => Ok(()),
            _ => Err(PrebindError::CrossSite),
        };
    }
    let Some(origin) = origin else {
        // Not a browser-initiated cross-origin request (curl, server-side).
        return Ok(());
    };
    if origin_allowed() {
        return Ok(());
    }
    let origin_host = origin
        .split_once("://")
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(o), Some(h)) if o.eq_ignore_ascii_case(h) => Ok(()),
        _ => Err(PrebindError::CrossSite),
    }
}

/// The host the request was sent to: the `Host` header (HTTP/1.1), else the
/// URI's authority (HTTP/2 `:authority`, RFC 9113 §8.3.1).
fn request_host(parts: &http::request::Parts) -> Option<&str> {
    parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| parts.uri.authority().map(|a| a.as_str()))
}

/// The `Origin` of a cross-origin request from an allowed origin, which
/// gets CORS headers naming exactly that origin (never a wildcard).
fn allowed_cors_origin<'a>(headers: &'a HeaderMap, allowed: &[String]) -> Option<&'a HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    allowed
        .iter()
        .any(|a| a.eq_ignore_ascii_case(text))
        .then_some(origin)
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
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(PrebindError::PayloadTooLarge(limit));
    }
    match Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error) if error.is::<http_body_util::LengthLimitError>() => {
            Err(PrebindError::PayloadTooLarge(limit))
        }
        Err(_) => Err(PrebindError::BadRequest(
            "the request body could not be read".into(),
        )),
    }
}

/// See [`PrebindRequest::parse`].
fn parse_request(bytes: &[u8]) -> Result<PrebindRequest, PrebindError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(PrebindRequest::default());
    }
    let root = xml::parse(bytes).map_err(|e| PrebindError::BadRequest(e.to_string()))?;
    let in_bosh_namespace = root.ns.as_deref().is_none_or(|ns| ns == NS_HTTPBIND);
    if &*root.name != "body" || !in_bosh_namespace {
        return Err(PrebindError::BadRequest(
            "expected <body xmlns='http://jabber.org/protocol/httpbind'/>".into(),
        ));
    }
    let number = |name: &'static str| -> Result<Option<u64>, PrebindError> {
        root.attr(name)
            .map(|v| {
                let v = v.trim();
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(PrebindError::BadRequest(format!(
                        "'{name}' must be a positive integer"
                    )));
                }
                v.parse::<u64>()
                    .map_err(|_| PrebindError::BadRequest(format!("'{name}' is out of range")))
            })
            .transpose()
    };
    let rid = number("rid")?;
    if let Some(rid) = rid {
        let max = HandshakeConfig::max_first_rid();
        if !(1..=max).contains(&rid) {
            return Err(PrebindError::BadRequest(format!(
                "'rid' must be between 1 and {max} (XEP-0124 §14.1)"
            )));
        }
    }
    Ok(PrebindRequest {
        to: root.attr("to").map(str::to_owned),
        rid,
        wait: number("wait")?,
        hold: number("hold")?,
    })
}

/// `to` must be a bare domain: no localpart, no resource, nothing odd.
fn check_to(to: &str) -> Result<String, PrebindError> {
    let bad = |why: &str| PrebindError::BadRequest(format!("'to' {why}"));
    if to.contains('@') || to.contains('/') {
        return Err(bad("must be a bare domain, not a JID"));
    }
    let domain = normalize_domain(to.trim());
    if domain.is_empty() || domain.len() > 1023 {
        return Err(bad("is empty or too long"));
    }
    if domain.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("contains whitespace or control characters"));
    }
    Ok(domain)
}

fn success(config: &Config, format: Format, session: &PrebindSession) -> Response<Full<Bytes>> {
    let (content_type, body) = match format {
        Format::Xml => ("text/xml; charset=utf-8", xml_success(session)),
        Format::Json => ("application/json", json_success(config, session)),
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

/// The Converse.js answer: `rid` is the next RID, passed as-is to `attach`.
pub(crate) fn json_success(config: &Config, session: &PrebindSession) -> String {
    JsonObject::new()
        .string("jid", &session.jid)
        .string("sid", &session.sid)
        .number("rid", session.next_rid())
        .number("wait", session.wait.into())
        .number("hold", session.hold.into())
        .string("bosh_service_url", config.bosh_service_url())
        .finish()
}

/// `{"error": …, "condition": …}`, the same object HTML injection uses.
pub(crate) fn json_error(error: &PrebindError) -> String {
    JsonObject::new()
        .string("error", &error.public_message())
        .string("condition", error.condition())
        .finish()
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
        Format::Json => ("application/json", json_error(&error)),
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
    fn parses_the_classic_strophe_request() {
        let request = parse_request(
            b"<body rid='3245' xmlns='http://jabber.org/protocol/httpbind' to='localhost' \
              xml:lang='en' wait='60' hold='1' content='text/xml; charset=utf-8' ver='1.6' \
              xmpp:version='1.0' xmlns:xmpp='urn:xmpp:xbosh'/>",
        )
        .unwrap();
        assert_eq!(
            request,
            PrebindRequest {
                to: Some("localhost".into()),
                rid: Some(3245),
                wait: Some(60),
                hold: Some(1)
            }
        );
        assert_eq!(parse_request(b"").unwrap(), PrebindRequest::default());
        assert_eq!(
            parse_request(b"<body/>").unwrap(),
            PrebindRequest::default()
        );
    }

    #[test]
    fn refuses_bad_numbers_and_documents() {
        for bad in [
            &b"<body rid='abc'/>"[..],
            b"<body rid='-1'/>",
            b"<body rid='0'/>",
            b"<body rid='9007199254740991'/>",
            b"<body rid='99999999999999999999999'/>",
            b"<body wait='1.5'/>",
            b"<body hold=''/>",
            b"<body rid='1'",
            b"<html/>",
            b"<body xmlns='urn:other'/>",
            b"not xml",
        ] {
            let error = parse_request(bad).unwrap_err();
            assert_eq!(
                error.status(),
                StatusCode::BAD_REQUEST,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

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
        };
        let answer = xml::parse(xml_success(&session).as_bytes()).unwrap();
        assert_eq!(answer.attr("jid"), Some(session.jid.as_str()));
        assert_eq!(answer.attr("sid"), Some(session.sid.as_str()));
        assert_eq!(answer.attr("evil"), None);
        assert_eq!(answer.children.len(), 1, "only the bind result");
        let config = crate::layer::tests::config();
        let json = json_success(&config, &session);
        for forbidden in ["</script>", "<!--", "\u{2028}", "<iq"] {
            assert!(!json.contains(forbidden), "{forbidden} in {json}");
        }
    }

    #[test]
    fn to_must_be_a_bare_domain() {
        assert_eq!(check_to("LocalHost.").unwrap(), "localhost");
        assert!(check_to("alice@localhost").is_err());
        assert!(check_to("localhost/res").is_err());
        assert!(check_to("").is_err());
        assert!(check_to("local host").is_err());
    }

    #[test]
    fn clamps_wait_and_hold() {
        assert_eq!(clamp(None, 59, 60), 59);
        assert_eq!(clamp(Some(3600), 59, 60), 60);
        assert_eq!(clamp(Some(0), 59, 60), 1);
        assert_eq!(clamp(Some(30), 59, 60), 30);
    }

    #[test]
    fn cross_site_requests_are_refused() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (k, v) in pairs {
                map.insert(*k, HeaderValue::from_static(v));
            }
            map
        };
        let allowed = vec!["https://partner.example".to_owned()];
        assert!(check_same_site(&headers(&[]), None, &allowed).is_ok());
        assert!(
            check_same_site(
                &headers(&[("sec-fetch-site", "same-origin")]),
                None,
                &allowed
            )
            .is_ok()
        );
        assert!(
            check_same_site(
                &headers(&[("sec-fetch-site", "cross-site")]),
                None,
                &allowed
            )
            .is_err()
        );
        assert!(
            check_same_site(&headers(&[("sec-fetch-site", "same-site")]), None, &allowed).is_err()
        );
        assert!(
            check_same_site(
                &headers(&[
                    ("sec-fetch-site", "cross-site"),
                    ("origin", "https://partner.example")
                ]),
                None,
                &allowed
            )
            .is_ok()
        );
        assert!(
            check_same_site(
                &headers(&[("origin", "http://app.example")]),
                Some("app.example"),
                &allowed
            )
            .is_ok()
        );
        assert!(
            check_same_site(
                &headers(&[("origin", "http://evil.example")]),
                Some("app.example"),
                &allowed
            )
            .is_err()
        );
        assert!(
            check_same_site(
                &headers(&[("origin", "null")]),
                Some("app.example"),
                &allowed
            )
            .is_err()
        );
    }
}
