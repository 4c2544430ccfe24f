// The demo pages' client: get a pre-bound BOSH session, attach Strophe.js to it,
// send an XEP-0199 ping in the very first request, and show the result.
//
// <body data-flow="injected">: the session is in the page (<script id="xmpp-prebind">,
//   JSON, `rid` = the NEXT rid, passed to attach unchanged).
// <body data-flow="post">: the classic flow, POST <body/> to /prebind (`rid` in the
//   answer = the LAST used rid, so attach with rid + 1).
// Either way, a failed pre-bind falls back to a normal anonymous login.
//
// For tests: #status reads "connected as JID", #ping-ms holds the ping round trip, and
// window.__prebindResult = {jid, method, navToPingMs, pingMs, attachRid, ...} once done
// (or {method, error} on failure). method is 'injected', 'post' or 'fallback'.
(() => {
  'use strict';

  const PING_TIMEOUT_MS = 10000;
  const el = (id) => document.getElementById(id);
  const meta = (name, fallback) =>
    document.querySelector(`meta[name="${name}"]`)?.getAttribute('content') || fallback;
  const show = (id, text) => {
    const node = el(id);
    if (node) node.textContent = text;
  };
  const log = (line) => {
    const node = el('log');
    if (node) node.textContent += `${performance.now().toFixed(1).padStart(8)} ms  ${line}\n`;
  };
  const setStatus = (text, state) => {
    show('status', text);
    el('status').dataset.state = state;
  };

  let finished = false;
  const finish = (result) => {
    if (finished) return;
    finished = true;
    window.__prebindResult = result;
  };
  const fail = (method, error) => {
    log(`error: ${error}`);
    if (finished) return;
    setStatus(`failed: ${error}`, 'error');
    finish({ method, error: String(error) });
  };

  const getButton = el('get-prebind');
  if (getButton) {
    getButton.onclick = async () => {
      const started = performance.now();
      const response = await fetch('/prebind');
      const text = await response.text();
      show('get-prebind-out', `${response.status} in ${(performance.now() - started).toFixed(1)} ms\n${text}`);
    };
  }

  if (typeof window.Strophe === 'undefined') {
    el('help').hidden = false;
    fail(null, 'Strophe.js not loaded from /vendor/strophe.js (run `npm ci --prefix browser`)');
    return;
  }
  const { Strophe, $iq } = window;
  const statusName = (code) =>
    Object.keys(Strophe.Status).find((name) => Strophe.Status[name] === code) || String(code);

  // Same-origin BOSH: the server forwards /http-bind to the connection manager.
  function connection(url) {
    const conn = new Strophe.Connection(url || '/http-bind');
    conn.rawOutput = (data) => log(`→ ${data}`);
    conn.rawInput = (data) => log(`← ${data}`);
    window.__conn = conn;
    return conn;
  }

  // Queues the ping and flushes at once, so that it travels in the first request after
  // attach: with a wrong rid handed over, the CM would drop it (rid too low) or park it
  // (rid too high) and no reply would come.
  function ping(conn, method, details) {
    const sent = performance.now();
    const iq = $iq({ type: 'get', to: Strophe.getDomainFromJid(conn.jid) }).c('ping', { xmlns: 'urn:xmpp:ping' });
    conn.sendIQ(
      iq,
      () => {
        const now = performance.now(); // milliseconds since navigation start
        const pingMs = now - sent;
        show('ping-ms', pingMs.toFixed(1));
        show('nav-ms', now.toFixed(0));
        setStatus(`connected as ${conn.jid}`, 'connected');
        finish({ jid: conn.jid, method, navToPingMs: now, pingMs, ...details });
      },
      (reply) => fail(method, reply ? `ping answered with an error: ${Strophe.serialize(reply)}` : 'ping timed out'),
      PING_TIMEOUT_MS,
    );
    conn.flush();
  }

  function onStatus(conn, method, details, ready) {
    return (code, condition) => {
      log(`status ${statusName(code)}${condition ? ` (${condition})` : ''}`);
      if (code === ready) {
        ping(conn, method, details);
      } else if ([Strophe.Status.CONNFAIL, Strophe.Status.AUTHFAIL, Strophe.Status.ERROR,
        Strophe.Status.CONNTIMEOUT, Strophe.Status.DISCONNECTED].includes(code)) {
        fail(method, `${statusName(code)}${condition ? `: ${condition}` : ''}`);
      }
    };
  }

  function attach(method, session, details) {
    show('method', method === 'injected'
      ? 'attached to the session injected into the page (0 round trips)'
      : 'attached to the session from POST /prebind (1 round trip)');
    setStatus(`attaching as ${session.jid}…`, 'loading');
    const conn = connection(session.bosh_service_url);
    conn.attach(session.jid, session.sid, session.rid,
      onStatus(conn, method, { attachRid: session.rid, ...details }, Strophe.Status.ATTACHED),
      session.wait, session.hold);
  }

  function fallback(reason) {
    const domain = meta('xmpp-anonymous-domain', 'anon.localhost');
    show('method', `pre-bind failed (${reason}): normal anonymous login on ${domain}`);
    setStatus(`pre-bind failed (${reason}); logging in anonymously…`, 'loading');
    log(`pre-bind failed (${reason}), falling back to connect('${domain}')`);
    const conn = connection();
    conn.connect(domain, null,
      onStatus(conn, 'fallback', { prebindError: reason }, Strophe.Status.CONNECTED));
  }

  function injected() {
    const script = el('xmpp-prebind');
    if (!script) {
      show('injected', 'no session injected');
      return fallback('no session injected');
    }
    let session;
    try {
      session = JSON.parse(script.textContent);
    } catch (error) {
      return fallback(`unreadable snippet: ${error.message}`);
    }
    show('injected', JSON.stringify(session, null, 2));
    if (session.error) return fallback(session.condition || session.error);
    attach('injected', session, {});
  }

  const xmlAttr = (value) => String(value).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');

  async function post() {
    const domain = meta('xmpp-domain', 'anon.localhost');
    const rid = 1 + Math.floor(Math.random() * 0xfffffffe); // like Strophe: below 2^32
    const request = `<body xmlns='http://jabber.org/protocol/httpbind' to='${xmlAttr(domain)}' rid='${rid}' wait='59' hold='1'/>`;
    log(`POST /prebind ${request}`);
    let response;
    let text;
    try {
      response = await fetch('/prebind', {
        method: 'POST',
        headers: { 'Content-Type': 'text/xml; charset=utf-8' },
        body: request,
      });
      text = await response.text();
    } catch (error) {
      return fallback(`POST /prebind: ${error.message}`);
    }
    show('injected', `${response.status}\n${text}`);
    const body = new DOMParser().parseFromString(text, 'text/xml').documentElement;
    if (!response.ok || body.localName !== 'body' || body.getAttribute('type') === 'terminate') {
      return fallback(body.getAttribute('condition') || `HTTP ${response.status}`);
    }
    const lastRid = Number(body.getAttribute('rid'));
    attach('post', {
      jid: body.getAttribute('jid'),
      sid: body.getAttribute('sid'),
      rid: lastRid + 1, // the answer carries the LAST used rid
      wait: Number(body.getAttribute('wait')) || undefined,
      hold: Number(body.getAttribute('hold')) || undefined,
    }, { prebindRid: lastRid });
  }

  try {
    if (document.body.dataset.flow === 'post') post().catch((error) => fail('post', error));
    else injected();
  } catch (error) {
    fail(document.body.dataset.flow, error);
  }
})();
