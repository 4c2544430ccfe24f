//! One BOSH session on the fake: the XEP-0124 rules for its requests
//! (exact next RID, its `sid`) and the XEP-0206 login it walks through:
//! features, SASL, restart, bind, optional session IQ, then attached.
//!
//! Every `Err` is a protocol violation by the client, in words.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use quick_xml::escape::escape;

use super::builder::Config;
use super::element::Element;
use super::features::{self, SessionFeature, StreamFeatures};
use super::record::SessionInfo;
use super::scram::{Exchange, Hash, StoredKeys, Verdict};
use super::wire::{
    NS_BIND, NS_HTTPBIND, NS_SASL, NS_SESSION, NS_STREAMS, envelope, sasl_challenge, sasl_failure,
    sasl_success,
};

/// `Err` unless `condition`, with the message built lazily.
fn ensure(condition: bool, message: impl FnOnce() -> String) -> Result<(), String> {
    if condition { Ok(()) } else { Err(message()) }
}

#[derive(Debug)]
pub(super) struct Session {
    pub(super) sid: String,
    /// Requests received in this session, creation included, terminations
    /// not: the index of the next one.
    pub(super) requests: usize,
    last_rid: u64,
    mechanism: Option<String>,
    scram: Option<Exchange>,
    /// Server-final sent in a challenge; an empty `<response/>` is due.
    final_ack_due: bool,
    authenticated: bool,
    restarted: bool,
    /// Features owed on the next empty poll.
    features_due: bool,
    jid: Option<String>,
    session_iq: bool,
    terminated: bool,
}

impl Session {
    /// Checks a creation request (XEP-0124 §7.1, XEP-0206 §5) and answers
    /// it as Prosody does.
    pub(super) fn create(
        config: &Config,
        sid: String,
        request: &Element,
        rid: u64,
    ) -> Result<(Session, String), String> {
        let at = || format!("creation request: {request:?}");
        for (name, value) in [
            ("to", config.domain.as_str()),
            ("hold", "1"),
            ("ver", "1.6"),
            ("xmpp:version", "1.0"),
            ("content", "text/xml; charset=utf-8"),
            ("xmlns:xmpp", "urn:xmpp:xbosh"),
        ] {
            ensure(request.attr(name) == Some(value), || {
                format!("{name} must be {value:?}: {}", at())
            })?;
        }
        ensure(
            request.attr("xml:lang").is_some_and(|l| !l.is_empty()),
            || format!("no xml:lang: {}", at()),
        )?;
        let wait = request.attr("wait").and_then(|w| w.parse::<u32>().ok());
        let wait = wait
            .filter(|w| *w >= 1)
            .ok_or_else(|| format!("wait must be a number >= 1: {}", at()))?;
        ensure(request.children.is_empty(), || {
            format!("payload in the creation request: {}", at())
        })?;

        let features = match config.features {
            StreamFeatures::InResponse => features::mechanisms(&config.mechanisms),
            StreamFeatures::Late | StreamFeatures::Never => String::new(),
        };
        let sid_attrs = if config.with_sid {
            let sid = escape(&sid);
            format!(" authid='{sid}' sid='{sid}'")
        } else {
            String::new()
        };
        // Prosody: wait = min(client wait, bosh_max_wait = 120).
        let answer = format!(
            "<body hold='1'{sid_attrs} secure='true' xmpp:version='1.0' ver='1.6' \
             xmlns:stream='{NS_STREAMS}' xmlns:xmpp='urn:xmpp:xbosh' xmlns='{NS_HTTPBIND}' \
             from='{}' requests='2' polling='5' inactivity='60' wait='{}'>{features}</body>",
            escape(&config.domain),
            wait.min(120)
        );
        let session = Session {
            sid,
            requests: 1,
            last_rid: rid,
            mechanism: None,
            scram: None,
            final_ack_due: false,
            authenticated: false,
            restarted: false,
            features_due: config.features == StreamFeatures::Late,
            jid: None,
            session_iq: false,
            terminated: false,
        };
        Ok((session, answer))
    }

    /// XEP-0124 §14.1: each request carries the next RID, exactly.
    /// `count`: a request of the session's own (not a termination).
    pub(super) fn next_rid(&mut self, rid: u64, count: bool) -> Result<(), String> {
        ensure(!self.terminated, || {
            format!("request in terminated session {}", self.sid)
        })?;
        ensure(rid == self.last_rid + 1, || {
            format!(
                "RIDs must increase by exactly one: got {rid} after {} in session {}",
                self.last_rid, self.sid
            )
        })?;
        self.last_rid = rid;
        if count {
            self.requests += 1;
        }
        Ok(())
    }

    /// XEP-0124 §12: a terminate ends the session (its RID already checked).
    pub(super) fn terminate(&mut self) {
        self.terminated = true;
    }

    /// The answer to a request after the creation (RID already checked).
    pub(super) fn answer(
        &mut self,
        config: &Config,
        keys: Option<&StoredKeys>,
        request: &Element,
    ) -> Result<String, String> {
        if let Some(restart) = request.attr("xmpp:restart") {
            return self.restart(config, request, restart);
        }
        if request.children.is_empty() {
            // An empty poll: whatever is queued (Prosody would hold an empty
            // poll when nothing is; a handshake must not need that).
            if !std::mem::take(&mut self.features_due) {
                return Ok(envelope(&self.sid, ""));
            }
            let features = if self.restarted {
                features::bind(config.session)
            } else {
                features::mechanisms(&config.mechanisms)
            };
            return Ok(envelope(&self.sid, &features));
        }
        ensure(!self.features_due, || {
            format!("payload sent before the features came: {request:?}")
        })?;
        if self.jid.is_some() {
            return self.attached(config, request);
        }
        ensure(request.children.len() == 1, || {
            format!("one payload per request during the login: {request:?}")
        })?;
        let payload = &request.children[0];
        let inner = match payload.name.as_str() {
            "auth" => self.auth(config, keys, payload)?,
            "response" => self.scram_response(config, keys, payload)?,
            "iq" => self.iq(config, payload)?,
            other => return Err(format!("unexpected payload <{other}> during the login")),
        };
        Ok(envelope(&self.sid, &inner))
    }

    fn restart(
        &mut self,
        config: &Config,
        request: &Element,
        restart: &str,
    ) -> Result<String, String> {
        ensure(restart == "true", || format!("xmpp:restart='{restart}'"))?;
        ensure(request.attr("to") == Some(config.domain.as_str()), || {
            format!("restart to another domain: {request:?}")
        })?;
        ensure(request.attr("xmlns:xmpp") == Some("urn:xmpp:xbosh"), || {
            format!("restart without xmlns:xmpp: {request:?}")
        })?;
        ensure(request.attr("xml:lang").is_some(), || {
            format!("restart without xml:lang: {request:?}")
        })?;
        ensure(request.children.is_empty(), || {
            format!("payload in the restart: {request:?}")
        })?;
        ensure(self.authenticated, || {
            "stream restart before SASL success".to_owned()
        })?;
        ensure(!self.restarted, || "second stream restart".to_owned())?;
        self.restarted = true;
        let features = match config.features {
            StreamFeatures::InResponse => features::bind(config.session),
            StreamFeatures::Late => {
                self.features_due = true;
                String::new()
            }
            StreamFeatures::Never => String::new(),
        };
        Ok(envelope(&self.sid, &features))
    }

    fn auth(
        &mut self,
        config: &Config,
        keys: Option<&StoredKeys>,
        auth: &Element,
    ) -> Result<String, String> {
        ensure(auth.attr("xmlns") == Some(NS_SASL), || format!("{auth:?}"))?;
        ensure(self.mechanism.is_none(), || "second <auth/>".to_owned())?;
        let mechanism = auth
            .attr("mechanism")
            .ok_or_else(|| format!("no mechanism attribute: {auth:?}"))?;
        ensure(config.mechanisms.iter().any(|m| m == mechanism), || {
            format!("{mechanism} was not offered")
        })?;
        self.mechanism = Some(mechanism.to_owned());
        let data = match auth.text.trim() {
            "=" | "" => Vec::new(),
            text => B64
                .decode(text)
                .map_err(|e| format!("initial response is not base64 ({e}): {text}"))?,
        };
        if mechanism == "ANONYMOUS" {
            self.authenticated = true;
            return Ok(sasl_success(""));
        }
        let (user, _) = config
            .account
            .as_ref()
            .ok_or_else(|| format!("{mechanism} on a fake with no account"))?;
        let keys = keys.ok_or_else(|| format!("{mechanism} on a fake with no account"))?;
        if mechanism == "PLAIN" {
            let (_, password) = config.account.as_ref().expect("checked above");
            if data == format!("\0{user}\0{password}").as_bytes() {
                self.authenticated = true;
                return Ok(sasl_success(""));
            }
            return Ok(sasl_failure("not-authorized"));
        }
        let hash = Hash::of(mechanism)
            .ok_or_else(|| format!("the fake has no server side for {mechanism}"))?;
        let (exchange, server_first) = Exchange::start(hash, &data, user, keys)?;
        self.scram = Some(exchange);
        Ok(sasl_challenge(&B64.encode(server_first)))
    }

    fn scram_response(
        &mut self,
        config: &Config,
        keys: Option<&StoredKeys>,
        response: &Element,
    ) -> Result<String, String> {
        ensure(response.attr("xmlns") == Some(NS_SASL), || {
            format!("{response:?}")
        })?;
        if std::mem::take(&mut self.final_ack_due) {
            ensure(response.text.trim().is_empty(), || {
                format!("the response to server-final must be empty: {response:?}")
            })?;
            self.authenticated = true;
            return Ok(sasl_success(""));
        }
        let exchange = self
            .scram
            .take()
            .ok_or_else(|| "<response/> outside SCRAM".to_owned())?;
        let keys = keys.ok_or_else(|| "SCRAM on a fake with no account".to_owned())?;
        let client_final = B64
            .decode(response.text.trim())
            .map_err(|e| format!("response is not base64 ({e})"))?;
        match exchange.finish(&client_final, keys, config.tamper_server_signature)? {
            Verdict::NotAuthorized => Ok(sasl_failure("not-authorized")),
            Verdict::Proven(verifier) if config.server_final_in_challenge => {
                self.final_ack_due = true;
                Ok(sasl_challenge(&verifier))
            }
            Verdict::Proven(verifier) => {
                self.authenticated = true;
                Ok(sasl_success(&verifier))
            }
        }
    }

    fn iq(&mut self, config: &Config, iq: &Element) -> Result<String, String> {
        ensure(self.restarted, || {
            "<iq/> before the stream restart".to_owned()
        })?;
        ensure(iq.attr("xmlns") == Some("jabber:client"), || {
            format!("{iq:?}")
        })?;
        ensure(iq.attr("type") == Some("set"), || format!("{iq:?}"))?;
        let id = iq
            .attr("id")
            .ok_or_else(|| format!("iq without id: {iq:?}"))?;
        let id = escape(id);
        let bind = iq
            .child("bind")
            .ok_or_else(|| format!("unexpected iq before bind: {iq:?}"))?;
        ensure(bind.attr("xmlns") == Some(NS_BIND), || format!("{bind:?}"))?;
        let jid = match bind.child("resource") {
            Some(resource) => {
                let bare = config
                    .jid
                    .split_once('/')
                    .map_or(config.jid.as_str(), |j| j.0);
                format!("{bare}/{}", resource.text)
            }
            None => config.jid.clone(),
        };
        let answer = format!(
            "<iq id='{id}' xmlns='jabber:client' type='result'>\
             <bind xmlns='{NS_BIND}'><jid>{}</jid></bind></iq>",
            escape(&jid)
        );
        self.jid = Some(jid);
        Ok(answer)
    }

    /// After bind: the session IQ, pings, anything else accepted silently.
    fn attached(&mut self, config: &Config, request: &Element) -> Result<String, String> {
        let jid = self.jid.clone().unwrap_or_default();
        let mut inner = String::new();
        for stanza in &request.children {
            let Some(id) = stanza.attr("id").filter(|_| stanza.name == "iq") else {
                continue;
            };
            let id = escape(id);
            if let Some(session) = stanza.child("session") {
                ensure(session.attr("xmlns") == Some(NS_SESSION), || {
                    format!("{session:?}")
                })?;
                ensure(config.session != SessionFeature::Absent, || {
                    "session IQ sent though not advertised".to_owned()
                })?;
                ensure(stanza.attr("type") == Some("set"), || format!("{stanza:?}"))?;
                ensure(!self.session_iq, || "second session IQ".to_owned())?;
                self.session_iq = true;
            } else if stanza.attr("type") != Some("get") {
                continue;
            }
            inner.push_str(&format!(
                "<iq to='{}' xmlns='jabber:client' id='{id}' type='result'/>",
                escape(&jid)
            ));
        }
        Ok(envelope(&self.sid, &inner))
    }

    pub(super) fn info(&self) -> SessionInfo {
        SessionInfo {
            sid: self.sid.clone(),
            last_rid: self.last_rid,
            mechanism: self.mechanism.clone(),
            authenticated: self.authenticated,
            jid: self.jid.clone(),
            session_iq: self.session_iq,
            terminated: self.terminated,
        }
    }
}
