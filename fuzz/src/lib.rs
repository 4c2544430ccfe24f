//! The fuzz harnesses of `bosh-prebind`: one function per fuzz target, each
//! taking libFuzzer's raw bytes, panicking on any broken invariant.
//!
//! The same file is compiled into `tests/fuzz_regressions.rs` (with
//! `#[path]`), which replays the committed seeds and regression inputs through
//! these functions on stable `cargo test`, so CI checks them without nightly
//! features or libFuzzer.
//!
//! Input layouts (first bytes steer the harness, the rest is the payload) are
//! described on each function and in `fuzz/README.md`.

use std::ops::Range;
use std::sync::Arc;

use bosh_prebind::bosh::{BoshResponse, NS_HTTPBIND, Sasl2Message, SaslMessage};
use bosh_prebind::handshake::{Handshake, HandshakeConfig, HandshakeError, MAX_RID, Step};
use bosh_prebind::inject::{HtmlScanner, MAX_MARKER_LEN, Scan};
use bosh_prebind::{Credentials, Mechanism, PrebindError, PrebindRequest, ScramCache};
use bytes::Bytes;
use quick_xml::XmlVersion;
use quick_xml::events::Event;

/// Separates the CM responses in a `cm_response` input. NUL can never occur
/// in XML, so no response worth feeding is lost to it.
pub const RESPONSE_SEPARATOR: u8 = 0;

/// The snippet placeholder spliced in at the insertion point.
pub const SNIPPET: &[u8] = b"[[xmpp-prebind-snippet]]";

/// The default marker comment of `PrebindLayer`.
pub const DEFAULT_MARKER: &[u8] = b"<!--xmpp-prebind-->";

/// The most page bytes the scanner may hold back at any time: a candidate tag
/// of at most the marker's length plus a few bytes (the scanner's `HOLD`,
/// `src/inject.rs`).
pub const MAX_HELD: usize = MAX_MARKER_LEN + 2;

// ---------------------------------------------------------------------------
// prebind_request
// ---------------------------------------------------------------------------

/// Target `prebind_request`: the whole input is a POST body for the prebind
/// path, given to [`PrebindRequest::parse`].
///
/// Checks: never panics; whitespace-only bodies ask for the defaults; errors
/// are `BadRequest`; an accepted `rid` is in `1..=max_first_rid()`; parsing is
/// deterministic; and the request the layer would build from it round-trips:
/// the handshake's session-creation `<body/>` is well-formed XML carrying
/// that `rid` (and `wait`, `hold`, `to`), and reads back through
/// `PrebindRequest::parse` with the same values.
pub fn prebind_request(data: &[u8]) {
    let parsed = PrebindRequest::parse(data);
    if data.iter().all(u8::is_ascii_whitespace) {
        assert_eq!(parsed, Ok(PrebindRequest::default()), "blank body");
    }
    let request = match parsed {
        Ok(request) => request,
        Err(PrebindError::BadRequest(_)) => return,
        Err(other) => panic!("PrebindRequest::parse must only fail with BadRequest: {other:?}"),
    };
    let max = HandshakeConfig::max_first_rid();
    if let Some(rid) = request.rid {
        assert!((1..=max).contains(&rid), "rid {rid} accepted, max {max}");
    }
    assert_eq!(
        PrebindRequest::parse(data).as_ref(),
        Ok(&request),
        "parse is not deterministic"
    );

    // What the endpoint does next (src/endpoint.rs `establish`), minus the
    // allow-list: a `to` that `check_to` refuses never reaches the handshake
    // (a fixed domain stands in), one it accepts goes on trimmed and
    // normalized.
    let domain = request
        .to
        .as_deref()
        .and_then(check_to)
        .unwrap_or_else(|| "localhost".to_owned());
    let credentials = Credentials::anonymous(&domain);
    let normalized = credentials.domain().to_owned();
    let mut config = HandshakeConfig::new(credentials);
    config.first_rid = request.rid;
    config.wait = request.wait.map_or(59, saturate_u32);
    config.hold = request.hold.map_or(1, saturate_u32);
    let (wait, hold) = (config.wait, config.hold);
    let (handshake, creation) = Handshake::start(config);
    let first = handshake.last_rid();
    if let Some(rid) = request.rid {
        assert_eq!(first, rid, "the requested rid is not the first rid");
    } else {
        assert!((1..1 << 32).contains(&first), "random first rid {first}");
    }
    let sent = read_request(&creation);
    assert_eq!(sent.rid, Some(first), "creation body rid: {creation}");
    assert_eq!(sent.sid, None, "creation body has a sid: {creation}");
    assert_eq!(sent.to.as_deref(), Some(normalized.as_str()), "{creation}");
    let back = PrebindRequest::parse(creation.as_bytes())
        .unwrap_or_else(|e| panic!("creation body {creation:?} does not read back: {e}"));
    assert_eq!(back.rid, Some(first));
    assert_eq!(back.to.as_deref(), Some(normalized.as_str()));
    assert_eq!(back.wait, Some(u64::from(wait)));
    assert_eq!(back.hold, Some(u64::from(hold)));
}

/// Mirrors the endpoint's private `check_to`: a bare domain (no localpart
/// or resource), trimmed, without one trailing dot, lower-cased, not empty,
/// at most 1023 bytes, without whitespace or control characters.
fn check_to(to: &str) -> Option<String> {
    if to.contains('@') || to.contains('/') {
        return None;
    }
    let trimmed = to.trim();
    let domain = trimmed
        .strip_suffix('.')
        .unwrap_or(trimmed)
        .to_ascii_lowercase();
    let ok = !domain.is_empty()
        && domain.len() <= 1023
        && !domain.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(domain)
}

fn saturate_u32(value: u64) -> u32 {
    u32::try_from(value).unwrap_or(u32::MAX)
}

// ---------------------------------------------------------------------------
// cm_response
// ---------------------------------------------------------------------------

/// Target `cm_response`: connection-manager responses, and the handshake
/// state machine driven by them.
///
/// Layout: byte 0 chooses the login (bits 0-1: `0` anonymous on
/// `anon.localhost`, `1` account `alice@localhost` with any mechanism, `2`
/// alice restricted to PLAIN, `3` `bob@localhost` with resource `prebind`,
/// SCRAM only), the first RID (bits 2-3: `1`, a Prosody transcript's,
/// `max_first_rid()`, `2^32 - 1`), SCRAM assistance (bit 4, below) and a
/// `ScramCache` (bit 5, fresh for each input); the ASCII digits `0`-`3` pick
/// the logins with RID 1 and nothing else. The rest is responses separated
/// by NUL bytes, fed in order to `Handshake::receive` until an error or
/// `Done`.
///
/// SCRAM assistance: the client nonce is random, so a fuzzer cannot answer
/// SCRAM's client-first message. With bit 4 set, a response that starts with
/// byte 1 (or 2) is instead the plain SCRAM message of a `<challenge/>` (or
/// `<success/>`) that the harness wraps and base64-encodes, after replacing
/// each `%r` with the client nonce of the last `<auth/>` sent.
///
/// Checks: never panics; `BoshResponse::parse` errors are exactly what the
/// handshake reports; every `Step::Send` is well-formed XML (read by an
/// independent quick-xml pass) whose `rid` is the previous one plus 1, never
/// above `MAX_RID`, within the handshake's request budget, and whose `sid`
/// is the CM's; on `Done`, `next_rid() == last_rid + 1`, `last_rid` is the
/// last sent, the JID is non-empty and full, `round_trips` counts every
/// request; after `Done` or an error, `receive` answers `Finished`.
pub fn cm_response(data: &[u8]) {
    let Some((&flags, responses)) = data.split_first() else {
        return;
    };
    // Reading arbitrary bytes as one response must not panic either.
    let _ = BoshResponse::parse(responses);

    let alice = || Credentials::account("alice@localhost", "secret-alice").expect("valid JID");
    let credentials = match flags & 3 {
        0 => Credentials::anonymous("anon.localhost"),
        1 => alice(),
        2 => alice().with_mechanisms([Mechanism::Plain]),
        _ => Credentials::account("bob@localhost", "secret-bob")
            .expect("valid JID")
            .with_resource("prebind")
            .with_mechanisms([Mechanism::ScramSha256, Mechanism::ScramSha1]),
    };
    let first_rid = match (flags >> 2) & 3 {
        0 => 1,
        1 => 1_062_715_484_561,
        2 => HandshakeConfig::max_first_rid(),
        _ => u64::from(u32::MAX),
    };
    let assist = flags & 0x10 != 0;
    // How many requests one handshake may make (the private MAX_REQUESTS).
    let budget = MAX_RID - HandshakeConfig::max_first_rid();

    let mut config = HandshakeConfig::new(credentials);
    config.first_rid = Some(first_rid);
    let cache = (flags & 0x20 != 0).then(|| Arc::new(ScramCache::new(2)));
    let (mut handshake, creation) = Handshake::start(config);
    let sent = read_request(&creation);
    assert_eq!(sent.rid, Some(first_rid), "creation: {creation}");
    assert_eq!(handshake.last_rid(), first_rid);
    assert_eq!(handshake.sid(), None);

    let mut last_rid = first_rid;
    let mut requests: u64 = 1;
    let mut client_nonce: Vec<u8> = Vec::new();
    for segment in responses.split(|&b| b == RESPONSE_SEPARATOR) {
        let assisted;
        let response = match segment.split_first() {
            Some((&kind @ (1 | 2), message)) if assist => {
                assisted = scram_response(kind, message, &client_nonce, handshake.sid());
                &assisted[..]
            }
            _ => segment,
        };
        let parsed = BoshResponse::parse(response);
        // Only a SCRAM exchange (one whose <auth/> was sent) reads them.
        let scram = !client_nonce.is_empty();
        if scram && parsed.as_ref().is_ok_and(|p| !scram_message_is_usable(p)) {
            return;
        }
        let step = handshake.receive(response);
        match (&parsed, &step) {
            (Err(e), _) => assert_eq!(step, Err(HandshakeError::Parse(e.clone()))),
            (Ok(_), Err(HandshakeError::Parse(e))) => {
                panic!("parsed alone, but the handshake reports {e:?}")
            }
            _ => {}
        }
        // SCRAM's key derivation, handed out by the handshake: run here,
        // through the cache when there is one.
        let step = match step {
            Ok(Step::Derive(request)) => {
                assert!(request.iterations <= u32::try_from(MAX_SCRAM_ITERATIONS).unwrap());
                let salted = match cache.as_ref().and_then(|cache| cache.get(&request)) {
                    Some(salted) => salted,
                    None => {
                        let salted = request.derive();
                        if let Some(cache) = &cache {
                            cache.insert(&request, Arc::clone(&salted));
                        }
                        salted
                    }
                };
                let next = handshake.derived(&salted);
                assert!(!matches!(next, Ok(Step::Derive(_))), "derived twice");
                next
            }
            other => other,
        };
        match step {
            Ok(Step::Derive(_)) => unreachable!("resolved above"),
            Ok(Step::Send(body)) => {
                requests += 1;
                last_rid += 1;
                assert!(
                    requests <= budget,
                    "request {requests} over the budget {budget}"
                );
                assert!(last_rid <= MAX_RID, "rid {last_rid} over MAX_RID");
                assert_eq!(handshake.last_rid(), last_rid);
                let sent = read_request(&body);
                assert_eq!(sent.rid, Some(last_rid), "request rid: {body}");
                let sid = handshake
                    .sid()
                    .expect("a request after the creation has a sid");
                // Exactly the CM's sid, whitespace included
                // (`sid_with_tab_or_newline_is_sent_back_unchanged`).
                assert_eq!(
                    sent.sid.as_deref(),
                    Some(sid),
                    "the sid sent back is not the CM's: {body}"
                );
                if let Some(nonce) = scram_client_nonce(&body) {
                    client_nonce = nonce;
                }
            }
            Ok(Step::Done(session)) => {
                assert_eq!(session.next_rid(), session.last_rid + 1);
                assert_eq!(session.last_rid, last_rid, "last_rid is not the last sent");
                assert_eq!(handshake.last_rid(), last_rid);
                assert!(!session.jid.is_empty(), "empty jid");
                assert!(session.jid.contains('/'), "bare jid {:?}", session.jid);
                assert_eq!(Some(session.sid.as_str()), handshake.sid());
                assert_eq!(u64::from(session.round_trips), requests, "round_trips");
                assert!(!session.mechanism.is_empty());
                assert_eq!(handshake.receive(response), Err(HandshakeError::Finished));
                return;
            }
            Err(_) => {
                assert_eq!(handshake.receive(response), Err(HandshakeError::Finished));
                return;
            }
        }
    }
}

/// The most PBKDF2 iterations the handshake accepts.
const MAX_SCRAM_ITERATIONS: u64 = bosh_prebind::handshake::MAX_SCRAM_ITERATIONS as u64;

/// Whether the harness lets this response reach the SASL code.
///
/// Skipped, for speed only: iteration counts that would run PBKDF2 for long
/// (65 up to the cap); counts over the cap are still sent, to check that they
/// are refused. (Messages with short attributes, which panicked rsasl 2.3.1,
/// are sent: `src/sasl.rs` refuses them before rsasl parses them.)
fn scram_message_is_usable(response: &BoshResponse) -> bool {
    use base64::Engine as _;
    let data = match (&response.sasl, &response.sasl2) {
        (Some(SaslMessage::Challenge(data) | SaslMessage::Success(data)), _) => data,
        // SASL2 (XEP-0388) carries the same SCRAM messages.
        (_, Some(Sasl2Message::Challenge(data))) => data,
        (_, Some(Sasl2Message::Success(success))) => match &success.additional_data {
            Some(data) => data,
            None => return true,
        },
        _ => return true,
    };
    let Ok(message) = base64::engine::general_purpose::STANDARD.decode(data) else {
        return true;
    };
    let attributes: Vec<&[u8]> = message.split(|&b| b == b',').collect();
    let iterations = attributes
        .get(2)
        .and_then(|a| a.strip_prefix(b"i="))
        .and_then(|i| std::str::from_utf8(i).ok())
        .and_then(|i| i.parse::<u64>().ok());
    !matches!(iterations, Some(65..=MAX_SCRAM_ITERATIONS))
}

/// A `<challenge/>` (kind 1) or `<success/>` (kind 2) carrying `message`
/// with `%r` replaced by `nonce`, base64-encoded.
fn scram_response(kind: u8, message: &[u8], nonce: &[u8], sid: Option<&str>) -> Vec<u8> {
    use base64::Engine as _;
    let mut plain = Vec::with_capacity(message.len() + nonce.len());
    let mut rest = message;
    while let Some(at) = rest.windows(2).position(|w| w == b"%r") {
        plain.extend_from_slice(&rest[..at]);
        plain.extend_from_slice(nonce);
        rest = &rest[at + 2..];
    }
    plain.extend_from_slice(rest);
    let element = if kind == 1 { "challenge" } else { "success" };
    let sid = quick_xml::escape::escape(sid.unwrap_or_default());
    format!(
        "<body xmlns='{NS_HTTPBIND}' sid='{sid}'><{element} xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>{}</{element}></body>",
        base64::engine::general_purpose::STANDARD.encode(&plain)
    )
    .into_bytes()
}

/// The client nonce of a SCRAM `<auth/>` request (`n,,n=user,r=NONCE`).
pub fn scram_client_nonce(request: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    let start = request.find("mechanism='SCRAM-")?;
    let text = &request[start..];
    let text = &text[text.find('>')? + 1..];
    // SASL2 (XEP-0388 §2.4): the message is in <initial-response>.
    let text = text.strip_prefix("<initial-response>").unwrap_or(text);
    let text = &text[..text.find('<')?];
    let first = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    let at = first.windows(3).position(|w| w == b",r=")?;
    Some(first[at + 3..].to_vec())
}

/// What an independent XML reader sees in a request `<body/>`.
#[derive(Debug, Default)]
pub struct SentRequest {
    /// `rid`, as a number.
    pub rid: Option<u64>,
    /// `sid`, normalized like any XML attribute value.
    pub sid: Option<String>,
    /// `to`, normalized like any XML attribute value.
    pub to: Option<String>,
}

/// Reads a request the crate wrote with quick-xml directly (not through the
/// crate's own reader): it must be exactly one well-formed
/// `<body xmlns='http://jabber.org/protocol/httpbind'>` element, with unique
/// attributes that unescape cleanly and only predefined entities.
pub fn read_request(body: &str) -> SentRequest {
    let mut reader = quick_xml::Reader::from_str(body);
    reader.config_mut().check_end_names = true;
    let mut depth = 0usize;
    let mut request = None;
    loop {
        let event = reader
            .read_event()
            .unwrap_or_else(|e| panic!("request is not well-formed XML ({e}): {body}"));
        match event {
            Event::Start(ref start) | Event::Empty(ref start) => {
                let attributes = attributes(start, body);
                if depth == 0 {
                    assert!(request.is_none(), "second root element in {body}");
                    assert_eq!(start.name().as_ref(), "body", "root of {body}");
                    let get = |name: &str| {
                        attributes
                            .iter()
                            .find(|(key, _)| key == name)
                            .map(|(_, value)| value.clone())
                    };
                    assert_eq!(get("xmlns").as_deref(), Some(NS_HTTPBIND), "{body}");
                    let rid = get("rid").map(|rid| {
                        rid.parse::<u64>()
                            .unwrap_or_else(|e| panic!("rid {rid:?} ({e}) in {body}"))
                    });
                    request = Some(SentRequest {
                        rid,
                        sid: get("sid"),
                        to: get("to"),
                    });
                }
                if matches!(event, Event::Start(_)) {
                    depth += 1;
                }
            }
            Event::End(_) => {
                depth = depth
                    .checked_sub(1)
                    .unwrap_or_else(|| panic!("unmatched end tag in {body}"));
            }
            Event::Text(text) => {
                assert!(
                    depth > 0 || text.xml10_content().trim().is_empty(),
                    "text outside the root in {body}"
                );
            }
            Event::CData(_) => assert!(depth > 0, "CDATA outside the root in {body}"),
            Event::GeneralRef(reference) => {
                let known = matches!(reference.resolve_char_ref(), Ok(Some(_)))
                    || quick_xml::escape::resolve_predefined_entity(&reference).is_some();
                assert!(known && depth > 0, "bad entity reference in {body}");
            }
            Event::DocType(_) | Event::PI(_) => panic!("DTD or PI in request {body}"),
            Event::Eof => break,
            Event::Decl(_) | Event::Comment(_) => {}
        }
    }
    assert_eq!(depth, 0, "unclosed element in request {body}");
    request.unwrap_or_else(|| panic!("no root element in request {body:?}"))
}

/// An element's attributes: (qualified name, unescaped and normalized value).
fn attributes(start: &quick_xml::events::BytesStart<'_>, body: &str) -> Vec<(String, String)> {
    start
        .attributes()
        .map(|attribute| {
            let attribute = attribute.unwrap_or_else(|e| panic!("bad attribute ({e}) in {body}"));
            let value = attribute
                .normalized_value(XmlVersion::Implicit1_0)
                .unwrap_or_else(|e| panic!("bad attribute value ({e}) in {body}"));
            (attribute.key.as_ref().to_owned(), value.into_owned())
        })
        .collect()
}

// ---------------------------------------------------------------------------
// html_scanner
// ---------------------------------------------------------------------------

/// Target `html_scanner`: the streaming HTML scanner, chunked at positions
/// taken from the input, in both `marker_only` modes.
///
/// Layout: byte 0 flags (bit 0: a custom marker follows); with a custom
/// marker, one length byte `L` and then `L % 57 + 1` bytes of marker text
/// (used as `<!--TEXT-->` when `PrebindLayer::marker` would accept it,
/// else the default marker); then one byte `K`, and `K % 17` chunk sizes of
/// one byte each (used cyclically; `0` feeds an empty chunk; no sizes means
/// one chunk); the rest is the page.
///
/// Checks, for both modes: never panics; the chunked output equals the
/// single-buffer output, with the same insertion point; the output is the
/// page with exactly the snippet inserted at that point (so its length is
/// page + snippet); the point is the marker, a `</head`/`<body` tag
/// (not in `marker_only` mode) or the page's end; no more than
/// [`MAX_HELD`] page bytes are ever held back; and the insertion point
/// without `marker_only` is never after the one with it.
pub fn html_scanner(data: &[u8]) {
    let mut input = data;
    let flags = take(&mut input, 1).first().copied().unwrap_or(0);
    let mut marker = DEFAULT_MARKER.to_vec();
    if flags & 1 == 1 {
        let len = take(&mut input, 1)
            .first()
            .map_or(1, |&l| usize::from(l) % 57 + 1);
        let text = take(&mut input, len);
        if let Some(custom) = layer_marker(text) {
            marker = custom;
        }
    }
    let count = take(&mut input, 1)
        .first()
        .map_or(0, |&k| usize::from(k) % 17);
    let sizes: Vec<usize> = take(&mut input, count)
        .iter()
        .map(|&s| usize::from(s))
        .collect();
    // One copy; the chunks are slices of it, as a body's frames would be.
    let page = Bytes::copy_from_slice(input);
    let chunks = split(page.len(), &sizes);
    let whole_page = [Range {
        start: 0,
        end: page.len(),
    }];

    let mut points = [0usize; 2];
    for (i, marker_only) in [false, true].into_iter().enumerate() {
        let whole = stream(&page, &whole_page, &marker, marker_only);
        let chunked = stream(&page, &chunks, &marker, marker_only);
        check_output(&page, &whole, &marker, marker_only);
        assert_eq!(
            chunked.at, whole.at,
            "insertion point differs when chunked (marker_only={marker_only}, sizes {sizes:?})"
        );
        assert!(
            chunked.output == whole.output,
            "chunked output differs (marker_only={marker_only}, sizes {sizes:?}):\n whole:   {:?}\n chunked: {:?}",
            String::from_utf8_lossy(&whole.output),
            String::from_utf8_lossy(&chunked.output),
        );
        points[i] = whole.at;
    }
    assert!(
        points[0] <= points[1],
        "the insertion point without marker_only ({}) is after the marker_only one ({})",
        points[0],
        points[1]
    );
}

/// `<!--TEXT-->` when `PrebindLayer::marker(TEXT)` would accept TEXT.
fn layer_marker(text: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(text).ok()?;
    let ok = !text.is_empty()
        && text.len() + 7 <= MAX_MARKER_LEN
        && !text.contains("--")
        && !text.contains('>');
    ok.then(|| format!("<!--{text}-->").into_bytes())
}

fn take<'a>(input: &mut &'a [u8], n: usize) -> &'a [u8] {
    let (head, rest) = input.split_at(n.min(input.len()));
    *input = rest;
    head
}

/// Cuts a page of `len` bytes with `sizes` used cyclically; a `0` is an
/// empty chunk (never two in a row: they would only slow fuzzing down); no
/// sizes means the page in one chunk.
fn split(len: usize, sizes: &[usize]) -> Vec<Range<usize>> {
    if sizes.is_empty() {
        return vec![Range { start: 0, end: len }];
    }
    if sizes.iter().all(|&size| size == 0) {
        return vec![0..0, 0..len];
    }
    let mut chunks: Vec<Range<usize>> = Vec::new();
    let mut at = 0;
    for &size in sizes.iter().cycle() {
        if at == len {
            break;
        }
        if size == 0 {
            if chunks.last().is_none_or(|chunk| !chunk.is_empty()) {
                chunks.push(at..at);
            }
            continue;
        }
        let end = (at + size).min(len);
        chunks.push(at..end);
        at = end;
    }
    chunks
}

/// The streamed result: the page with the snippet, and where it went.
struct Streamed {
    output: Vec<u8>,
    at: usize,
}

/// Streams `chunks` through a scanner exactly as the response body does
/// (`src/body.rs`): what `feed` emits, then at `Found` the snippet, the held
/// bytes and the rest of the chunk; later chunks pass through; at the end
/// `finish`, and the snippet when there was no insertion point.
fn stream(page: &Bytes, chunks: &[Range<usize>], marker: &[u8], marker_only: bool) -> Streamed {
    let mut scanner = HtmlScanner::new(marker, marker_only);
    let mut out: Vec<Bytes> = Vec::new();
    let mut output = Vec::new();
    let mut at = None;
    let mut fed = 0usize;
    for chunk in chunks {
        fed += chunk.len();
        let scan = scanner.feed(page.slice(chunk.clone()), &mut out);
        for piece in out.drain(..) {
            output.extend_from_slice(&piece);
        }
        match scan {
            Scan::Continue => {
                if at.is_none() {
                    assert!(
                        output.len() <= fed && fed - output.len() <= MAX_HELD,
                        "{} page bytes held back (at most {MAX_HELD})",
                        fed - output.len()
                    );
                }
            }
            Scan::Found { held, rest } => {
                assert!(at.is_none(), "a second insertion point");
                assert!(held.len() <= MAX_HELD, "{} bytes held", held.len());
                at = Some(output.len());
                output.extend_from_slice(SNIPPET);
                output.extend_from_slice(&held);
                output.extend_from_slice(&rest);
                assert_eq!(output.len() - SNIPPET.len(), fed, "bytes lost at Found");
            }
        }
    }
    scanner.finish(&mut out);
    if at.is_some() {
        assert!(
            out.is_empty(),
            "finish emitted bytes after the insertion point"
        );
    }
    for piece in out.drain(..) {
        output.extend_from_slice(&piece);
    }
    let at = *at.get_or_insert(output.len());
    if at == output.len() {
        output.extend_from_slice(SNIPPET);
    }
    Streamed { output, at }
}

/// The output is the page with the snippet at `at`, and `at` is a place
/// the snippet may go.
fn check_output(page: &[u8], streamed: &Streamed, marker: &[u8], marker_only: bool) {
    let Streamed { output, at } = streamed;
    let at = *at;
    assert_eq!(output.len(), page.len() + SNIPPET.len(), "output length");
    assert!(at <= page.len());
    assert!(
        output[..at] == page[..at]
            && &output[at..at + SNIPPET.len()] == SNIPPET
            && output[at + SNIPPET.len()..] == page[at..],
        "the output is not the page with the snippet at {at}"
    );
    let rest = &page[at..];
    let tag = |name: &[u8]| {
        rest.len() > name.len()
            && rest[..name.len()].eq_ignore_ascii_case(name)
            && matches!(
                rest[name.len()],
                b'\t' | b'\n' | b'\x0c' | b'\r' | b' ' | b'/' | b'>'
            )
    };
    let allowed = rest.is_empty()
        || rest.starts_with(marker)
        || (!marker_only && (tag(b"</head") || tag(b"<body")));
    assert!(
        allowed,
        "snippet at {at} (marker_only={marker_only}) before {:?}",
        String::from_utf8_lossy(&rest[..rest.len().min(40)])
    );
}
