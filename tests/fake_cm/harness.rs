//! Calling the layer in front of the fake CM, and reading its answers.

use std::convert::Infallible;
use std::time::Duration;

use bosh_prebind::test_util::{Element, FakeCm, FakeCmBuilder};
use bosh_prebind::{BoxError, Credentials, PrebindError, PrebindLayer, PrebindSession};
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, header};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tokio::time::Instant;
use tower::{Layer, ServiceExt, service_fn};

use crate::common::{self, get, post};

pub(crate) const CM_URL: &str = "http://cm.internal.example:5280/http-bind";
pub(crate) const CM_HOST: &str = "cm.internal.example";
pub(crate) const NS_HTTPBIND: &str = "http://jabber.org/protocol/httpbind";
pub(crate) const NS_STREAMS: &str = "http://etherx.jabber.org/streams";
pub(crate) const NS_SASL: &str = "urn:ietf:params:xml:ns:xmpp-sasl";
pub(crate) const SID: &str = "1a12ded7-4c59-4f35-9c13-46c86d9498d4";
pub(crate) const ANON: &str = "anon.localhost";
pub(crate) const ANON_JID: &str = "eunyql_gd_l2kozyecbj_nbi@anon.localhost/GtONlPbg6nB5";
pub(crate) const HOST: &str = "localhost";
pub(crate) const ALICE: &str = "alice@localhost";
pub(crate) const ALICE_PASSWORD: &str = "secret-alice";
pub(crate) const ALICE_JID: &str = "alice@localhost/mpZIduEk0fTx";

pub(crate) type CmLayer = PrebindLayer<FakeCm>;

/// Prosody's `anon.localhost`: ANONYMOUS only, optional session.
pub(crate) fn anonymous_cm() -> FakeCmBuilder {
    FakeCm::builder()
        .url(CM_URL.parse().unwrap())
        .sid(SID)
        .domain(ANON)
        .jid(ANON_JID)
        .mechanisms(["ANONYMOUS"])
}

/// Prosody's `localhost` with alice registered, offering `mechanisms`.
pub(crate) fn alice_cm(mechanisms: &[&str]) -> FakeCmBuilder {
    anonymous_cm()
        .domain(HOST)
        .jid(ALICE_JID)
        .account("alice", ALICE_PASSWORD)
        .mechanisms(mechanisms.iter().copied())
}

/// Who logs in as alice.
pub(crate) fn alice() -> Credentials {
    Credentials::account(ALICE, ALICE_PASSWORD).unwrap()
}

/// Who logs in anonymously.
pub(crate) fn anonymous() -> Credentials {
    Credentials::anonymous(ANON)
}

/// The layer in front of `cm`, logging in anonymously.
pub(crate) fn anonymous_layer(cm: &FakeCm) -> CmLayer {
    cm.layer().credentials(anonymous())
}

/// A GET prebind as `client` against `cm`; the session in the answer's
/// extensions must agree with what the fake saw.
pub(crate) async fn prebind_as(cm: &FakeCm, client: Credentials) -> Answer {
    let answer = send(&cm.layer().credentials(client), get()).await;
    if let Some(session) = &answer.session {
        assert_eq!(Some(session.mechanism), cm.mechanism().as_deref());
        assert_eq!(session.round_trips as usize, cm.requests().len());
        assert_eq!(session.last_rid, *cm.rids().last().unwrap());
    }
    assert_eq!(cm.violations(), Vec::<String>::new());
    answer
}

pub(crate) const PAGE_PATH: &str = "/page";
pub(crate) const PAGE_HTML: &str =
    "<!doctype html><html><head><title>p</title></head><body>page</body></html>";

async fn app<B>(request: Request<B>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == PAGE_PATH {
        return Ok(Response::builder()
            .header(header::CONTENT_TYPE, "text/html; charset=utf-8")
            .body(Full::new(Bytes::from_static(PAGE_HTML.as_bytes())))
            .unwrap());
    }
    Ok(Response::new(Full::new(Bytes::from_static(b"app"))))
}

/// One answer of the layered service.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
    pub(crate) error: Option<PrebindError>,
    pub(crate) session: Option<PrebindSession>,
    pub(crate) elapsed: Duration,
}

impl Answer {
    pub(crate) fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }

    pub(crate) fn xml(&self) -> Element {
        Element::parse(&self.body)
    }

    pub(crate) fn json(&self) -> Vec<(String, Json)> {
        parse_json(&self.body)
    }

    fn json_field(&self, key: &str) -> Json {
        self.json()
            .into_iter()
            .find(|(k, _)| k == key)
            .unwrap_or_else(|| panic!("no {key:?} in {}", self.body))
            .1
    }

    pub(crate) fn json_str(&self, key: &str) -> String {
        match self.json_field(key) {
            Json::Str(s) => s,
            other => panic!("{key} is {other:?}, not a string"),
        }
    }

    pub(crate) fn json_num(&self, key: &str) -> u64 {
        match self.json_field(key) {
            Json::Num(n) => n,
            other => panic!("{key} is {other:?}, not a number"),
        }
    }

    /// A successful XML answer (`rid` = the last used RID).
    pub(crate) fn assert_xml_success(&self) -> Element {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert_eq!(
            self.header(header::CONTENT_TYPE),
            Some("text/xml; charset=utf-8")
        );
        assert_eq!(self.header(header::CACHE_CONTROL), Some("no-store"));
        let body = self.xml();
        assert_eq!(body.name, "body");
        assert_eq!(body.attr("xmlns"), Some(NS_HTTPBIND));
        assert_eq!(body.attr("type"), None);
        body
    }

    /// A successful JSON answer (`rid` = the next RID).
    pub(crate) fn assert_json_success(&self) {
        assert_eq!(self.status, StatusCode::OK, "{}", self.body);
        assert_eq!(self.header(header::CONTENT_TYPE), Some("application/json"));
        assert_eq!(self.header(header::CACHE_CONTROL), Some("no-store"));
    }

    /// The documented failure in the documented shape.
    pub(crate) fn assert_failure(&self, format: Format, status: StatusCode, condition: &str) {
        assert_eq!(self.status, status, "{format:?}: {}", self.body);
        assert_eq!(self.header(header::CACHE_CONTROL), Some("no-store"));
        match format {
            Format::Xml => {
                assert_eq!(
                    self.header(header::CONTENT_TYPE),
                    Some("text/xml; charset=utf-8")
                );
                let body = self.xml();
                assert_eq!(body.name, "body");
                assert_eq!(body.attr("xmlns"), Some(NS_HTTPBIND));
                assert_eq!(body.attr("type"), Some("terminate"), "{}", self.body);
                assert_eq!(body.attr("condition"), Some(condition), "{}", self.body);
            }
            Format::Json => {
                assert_eq!(self.header(header::CONTENT_TYPE), Some("application/json"));
                assert_eq!(self.json_str("condition"), condition, "{}", self.body);
                assert!(!self.json_str("error").is_empty(), "{}", self.body);
            }
        }
        let error = self.error.as_ref().expect("PrebindError in the extensions");
        assert_eq!(error.status(), status);
        assert_eq!(error.condition(), condition);
    }
}

/// The two answer formats of the prebind path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// POST `<body/>` → XML.
    Xml,
    /// GET → JSON.
    Json,
}

impl Format {
    /// A request asking for all defaults.
    pub(crate) fn request(self) -> Request<Full<Bytes>> {
        match self {
            Format::Xml => post(&format!("<body xmlns='{NS_HTTPBIND}'/>")),
            Format::Json => get(),
        }
    }
}

/// Sends one request through `layer` wrapped around the "app" service.
/// A hung request fails the test (the clock may be paused: then this
/// fires as soon as nothing else can happen).
pub(crate) async fn send<B>(layer: &CmLayer, request: Request<B>) -> Answer
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let service = layer.layer(service_fn(app::<B>));
    let started = Instant::now();
    let response = tokio::time::timeout(Duration::from_secs(600), service.oneshot(request))
        .await
        .expect("the request hung")
        .unwrap_or_else(|never| match never {});
    let elapsed = started.elapsed();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.expect("the answer's body").to_bytes();
    Answer {
        status: parts.status,
        headers: parts.headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
        error: parts.extensions.get::<PrebindError>().cloned(),
        session: parts.extensions.get::<PrebindSession>().cloned(),
        elapsed,
    }
}

/// Leaves the layer as it is, for [`assert_fault`].
pub(crate) fn unchanged(layer: CmLayer) -> CmLayer {
    layer
}

/// Runs one prebind per answer format as `client`, each against a fresh
/// fake built from `cm` behind `configure(layer)`, and checks the
/// documented failure; then the same on an HTML route.
pub(crate) async fn assert_fault(
    cm: FakeCmBuilder,
    client: Credentials,
    configure: impl Fn(CmLayer) -> CmLayer,
    status: StatusCode,
    condition: &str,
) -> Vec<(Answer, FakeCm)> {
    let mut runs = Vec::new();
    for format in [Format::Xml, Format::Json] {
        let fake = cm.clone().build();
        let answer = send(
            &configure(fake.layer().credentials(client.clone())),
            format.request(),
        )
        .await;
        answer.assert_failure(format, status, condition);
        assert_eq!(fake.violations(), Vec::<String>::new());
        runs.push((answer, fake));
    }
    // The same fault on an HTML route: the page is still served, whole,
    // with the error object where the session would be.
    let fake = cm.build();
    let layer = configure(fake.layer().credentials(client)).inject_path(PAGE_PATH);
    let page = send(
        &layer,
        Request::get(PAGE_PATH).body(Full::default()).unwrap(),
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let open = "<script type=\"application/json\" id=\"xmpp-prebind\">";
    let start = page.body.find(open).expect("error object injected") + open.len();
    let end = start + page.body[start..].find("</script>").unwrap();
    let json = &page.body[start..end];
    assert_eq!(common::json_field(json, "condition"), condition, "{json}");
    assert_eq!(
        format!(
            "{}{}",
            &page.body[..start - open.len()],
            &page.body[end + 9..]
        ),
        PAGE_HTML,
        "the page itself is untouched"
    );
    runs
}

/// Sends a request that must be refused before anything reaches the CM.
pub(crate) async fn assert_refused<B>(
    layer: impl FnOnce(&FakeCm) -> CmLayer,
    request: Request<B>,
    status: StatusCode,
    condition: &str,
) -> Answer
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let format = if request.method() == Method::POST {
        Format::Xml
    } else {
        Format::Json
    };
    let cm = anonymous_cm().build();
    let answer = send(&layer(&cm), request).await;
    answer.assert_failure(format, status, condition);
    assert_eq!(cm.received(), 0, "the CM was contacted");
    answer
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Json {
    Str(String),
    Num(u64),
}

/// Reads the flat objects the crate writes (string and unsigned number
/// values only); panics on anything else.
fn parse_json(text: &str) -> Vec<(String, Json)> {
    let mut chars = text.trim().chars().peekable();
    let mut fields = Vec::new();
    assert_eq!(chars.next(), Some('{'), "{text}");
    let string = |chars: &mut std::iter::Peekable<std::str::Chars<'_>>| {
        assert_eq!(chars.next(), Some('"'), "{text}");
        let mut out = String::new();
        loop {
            match chars.next().expect("unterminated string") {
                '"' => return out,
                '\\' => match chars.next().unwrap() {
                    'u' => {
                        let hex: String = chars.by_ref().take(4).collect();
                        out.push(char::from_u32(u32::from_str_radix(&hex, 16).unwrap()).unwrap());
                    }
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    c => out.push(c),
                },
                c => out.push(c),
            }
        }
    };
    if chars.peek() == Some(&'}') {
        return fields;
    }
    loop {
        let key = string(&mut chars);
        assert_eq!(chars.next(), Some(':'), "{text}");
        let value = if chars.peek() == Some(&'"') {
            Json::Str(string(&mut chars))
        } else {
            let mut digits = String::new();
            while chars.peek().is_some_and(char::is_ascii_digit) {
                digits.push(chars.next().unwrap());
            }
            Json::Num(digits.parse().unwrap_or_else(|_| panic!("value: {text}")))
        };
        fields.push((key, value));
        match chars.next() {
            Some(',') => {}
            Some('}') => break,
            other => panic!("unexpected {other:?} in {text}"),
        }
    }
    assert_eq!(chars.next(), None, "{text}");
    fields
}

/// Yields until `condition` holds; after 30 s it fails instead of hanging
/// (a bound, not a timing).
pub(crate) async fn until(condition: impl Fn() -> bool) {
    let wait = async {
        while !condition() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(30), wait)
        .await
        .expect("the condition never held");
}
