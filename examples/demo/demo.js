// The demo pages' client: get a pre-bound BOSH session, attach Strophe.js to it,
// send an XEP-0199 ping in the very first request, and show the result.
//
// <body data-flow="injected">: the session is in the page (<script id="xmpp-prebind">,
//   JSON, `rid` = the NEXT rid, passed to attach unchanged).
// <body data-flow="post">: the classic flow, POST <body/> to /prebind (`rid` in the
//   answer = the LAST used rid, so attach with rid + 1).
// Either way, a failed pre-bind falls back to a normal anonymous login.
// Session reuse across page views (README "Sessions across page views"): the injected
// page keeps its session when the tab navigates, see keepAcrossPages() and reuse().
//
// For tests: #status reads "connected as JID", #ping-ms holds the ping round trip, and
// window.__prebindResult = {jid, method, navToPingMs, pingMs, attachRid, ...} once done
// (or {method, error} on failure). method is 'injected', 'post', 'fallback', 'reused'
// (re-attached to the session the previous page kept) or 'prebind' (GET /prebind: the
// kept session was gone). window.__messages lists the <message/>s received.
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

  // ---- Session reuse across page views ------------------------------------------------
  // The session is kept in sessionStorage (this tab only) under Strophe.js's keepalive
  // key. When the tab navigates, the page sets the reuse cookie: the server then injects
  // {"reuse":true,"jid":…,"bosh_service_url":…} instead of a new session, and the next
  // page re-attaches to the kept one (reuse()).
  const REUSE_COOKIE = meta('xmpp-reuse-cookie', ''); // PrebindLayer::reuse_cookie; '' = off
  const STORED = 'strophe-bosh-session'; // Strophe.js keepalive's key
  if (REUSE_COOKIE) document.cookie = `${REUSE_COOKIE}=; path=/; max-age=0`; // said once
  // Back to a page from the back/forward cache: its session has moved on since.
  addEventListener('pageshow', (event) => event.persisted && location.reload());

  // XEP-0124 §14.3: requests sent but not answered yet (rid → <body/>). The long-poll
  // the browser aborts when it leaves may already carry a stanza: the next page re-sends
  // these, and the CM answers again what it had answered (or takes what it never got).
  const unanswered = new Map();

  function keepAcrossPages(conn) {
    if (!REUSE_COOKIE) return;
    unanswered.clear(); // only the page's current connection counts
    conn.xmlOutput = (body) => unanswered.set(Number(body.getAttribute('rid')), Strophe.serialize(body));
    conn.nextValidRid = (rid) => unanswered.delete(rid - 1); // rid - 1 got its answer
    const live = () => conn.connected && conn.authenticated && !conn.disconnecting;
    // beforeunload: before the next page's request goes out (pagehide comes after).
    addEventListener('beforeunload', () => {
      if (live()) document.cookie = `${REUSE_COOKIE}=1; path=/; max-age=10; samesite=strict`;
    });
    addEventListener('pagehide', () => {
      const stored = JSON.parse(sessionStorage.getItem(STORED)); // Strophe keeps it current
      if (!live() || !stored) return;
      conn.options.keepalive = false; // nothing rewrites it after this
      stored.resend = [...unanswered.values()];
      sessionStorage.setItem(STORED, JSON.stringify(stored));
    });
  }

  // The next page: re-attach at the next RID (Strophe.js restore() checks the stored
  // session is this user's), re-send what the previous page got no answer to, then go on
  // as usual. A stored session that is gone (item-not-found: expired, or never there)
  // costs one GET /prebind, never a full login.
  function reuse(marker) {
    let stored = null;
    try {
      stored = JSON.parse(sessionStorage.getItem(STORED));
    } catch { /* unreadable: as if none */ }
    if (!stored) return prebind('no session kept in this tab');
    show('method', 're-attached to the session this tab kept (no new session)');
    const conn = connection(marker.bosh_service_url);
    const ready = () => {
      const resent = (stored.resend || []).map((xml) => resend(conn, xml));
      ping(conn, 'reused', { attachRid: stored.rid, resent });
    };
    try {
      conn.restore(marker.jid, onStatus(conn, 'reused', ready, prebind));
    } catch (error) {
      prebind(error.message); // not this user's session
    }
  }

  // Re-sent beside Strophe.js, not by it: a CM may answer item-not-found to an RID it
  // never answered once a later one got in first (nothing was lost then), which Strophe
  // would take for the end of the session. A replayed answer goes to Strophe's handlers.
  function resend(conn, xml) {
    const rid = Number(new DOMParser().parseFromString(xml, 'text/xml').documentElement.getAttribute('rid'));
    unanswered.set(rid, xml);
    fetch(conn.service, { method: 'POST', body: xml, headers: { 'Content-Type': 'text/xml; charset=utf-8' } })
      .then((response) => response.text())
      .then((text) => {
        unanswered.delete(rid);
        const body = new DOMParser().parseFromString(text, 'text/xml').documentElement;
        if (body.getAttribute('type') !== 'terminate' && body.children.length) {
          conn._dataRecv({ getResponse: () => body }); // Strophe.js has no public call for it
        }
      })
      .catch((error) => log(`re-sending rid ${rid}: ${error}`));
    return rid;
  }

  async function prebind(reason) {
    sessionStorage.removeItem(STORED);
    log(`kept session unusable (${reason}): GET /prebind`);
    let session;
    try {
      const response = await fetch('/prebind');
      session = await response.json();
    } catch (error) {
      return fallback(`GET /prebind: ${error.message}`);
    }
    if (session.error) return fallback(session.condition || session.error);
    attach('prebind', session, { reuseFailed: reason });
  }
  // --------------------------------------------------------------------------------------

  // Same-origin BOSH: the server forwards /http-bind to the connection manager.
  function connection(url) {
    const conn = new Strophe.Connection(url || '/http-bind', { keepalive: Boolean(REUSE_COOKIE) });
    conn.rawOutput = (data) => log(`→ ${data}`);
    conn.rawInput = (data) => log(`← ${data}`);
    keepAcrossPages(conn);
    window.__conn = conn;
    return conn;
  }

  window.__messages = [];
  function showMessages(conn) {
    conn.addHandler((message) => {
      const body = message.getElementsByTagName('body')[0]?.textContent ?? '';
      window.__messages.push({ id: message.getAttribute('id'), from: message.getAttribute('from'), body });
      const item = document.createElement('li');
      item.textContent = `${message.getAttribute('from')}: ${body}`;
      el('messages')?.append(item);
      return true;
    }, null, 'message');
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

  // `ready()` once attached or connected; `failed(reason)` once if it fails before the
  // page is done (default: the page fails).
  function onStatus(conn, method, ready, failed = (reason) => fail(method, reason)) {
    let over = false;
    return (code, condition) => {
      log(`status ${statusName(code)}${condition ? ` (${condition})` : ''}`);
      if (code === Strophe.Status.ATTACHED || code === Strophe.Status.CONNECTED) {
        showMessages(conn);
        ready();
      } else if (!over && !finished && [Strophe.Status.CONNFAIL, Strophe.Status.AUTHFAIL, Strophe.Status.ERROR,
        Strophe.Status.CONNTIMEOUT, Strophe.Status.DISCONNECTED].includes(code)) {
        over = true;
        failed(`${statusName(code)}${condition ? `: ${condition}` : ''}`);
      }
    };
  }

  function attach(method, session, details) {
    show('method', {
      injected: 'attached to the session injected into the page (0 round trips)',
      post: 'attached to the session from POST /prebind (1 round trip)',
      prebind: 'the kept session was gone: attached to one from GET /prebind (1 round trip)',
    }[method]);
    setStatus(`attaching as ${session.jid}…`, 'loading');
    const conn = connection(session.bosh_service_url);
    conn.attach(session.jid, session.sid, session.rid,
      onStatus(conn, method, () => ping(conn, method, { attachRid: session.rid, ...details })),
      session.wait, session.hold);
  }

  function fallback(reason) {
    const domain = meta('xmpp-anonymous-domain', 'anon.localhost');
    show('method', `pre-bind failed (${reason}): normal anonymous login on ${domain}`);
    setStatus(`pre-bind failed (${reason}); logging in anonymously…`, 'loading');
    log(`pre-bind failed (${reason}), falling back to connect('${domain}')`);
    const conn = connection();
    conn.connect(domain, null,
      onStatus(conn, 'fallback', () => ping(conn, 'fallback', { prebindError: reason })));
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
    if (session.reuse === true) return reuse(session);
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
