// Converse.js 14 on a page with a session injected by bosh-prebind: zero round trips.
//
//   import converse from '/vendor/converse/converse.min.js';
//   import { startConverse } from '/converse-prebind.js';
//   startConverse(converse, { jid, assets_path: '/vendor/converse/', view_mode: 'fullscreen' });
//
// Converse fetches `prebind_url` with a plain XHR GET and attaches to the JSON it reads
// (`rid` = the NEXT rid, as the snippet has it). Here `prebind_url` is a `blob:` URL made
// from the injected snippet, so that GET never leaves the browser. Converse asks for it
// only when it has no session of the same user in its keepalive store (sessionStorage,
// a reload): then it restores that one and the injected session goes unused.
// `GET /prebind` (one round trip) is the fallback: when the snippet is missing or carries
// an error, and for any later reconnect (the injected session is single-use).
//
// Whose session may be restored: Converse's `jid` setting makes it refuse a stored session
// of another account (it compares bare JIDs), but for an anonymous user (`jid` = the
// domain) it never restores at all in prebind mode (it appends a resource to the domain,
// and Strophe then matches nothing). So for a domain, the `jid` setting is left out and
// `forgetOtherSessions` does the check instead, before Converse starts.

/**
 * The injected snippet: a session, an error object, a reuse marker
 * (`{"reuse":true,"jid":…,"bosh_service_url":…}`, see isReuseSnippet), or null if there is none.
 */
export function injectedSnippet(id = 'xmpp-prebind') {
  const element = document.getElementById(id);
  if (!element) return null;
  try {
    return JSON.parse(element.textContent);
  } catch {
    return null;
  }
}

/**
 * Session reuse across page views (`PrebindLayer::reuse_cookie`): the server injected no
 * session because this browser said (the reuse cookie) it holds a live one from the page
 * it navigated from, and Converse restores that one from its keepalive store
 * (sessionStorage). The layer's marker is `{"reuse":true,"jid":…,"bosh_service_url":…}`
 * (`jid`: the bare JID, or the domain for anonymous logins); only `reuse` is checked here.
 * The only place here that knows the reuse snippet.
 */
export function isReuseSnippet(snippet) {
  return snippet !== null && typeof snippet === 'object' && snippet.reuse === true;
}

/** True for a snippet that carries a session to attach to. */
function isSession(snippet) {
  return snippet !== null && typeof snippet === 'object' && !snippet.error
    && typeof snippet.jid === 'string' && typeof snippet.sid === 'string' && Number.isSafeInteger(snippet.rid);
}

/**
 * Converse's `prebind_url`: a `blob:` URL holding the injected session, else `fallback`
 * (a missing snippet, an error object, or a reuse marker).
 */
export function prebindUrl(snippet, fallback = '/prebind') {
  if (!isSession(snippet)) return fallback;
  const { jid, sid, rid } = snippet;
  return URL.createObjectURL(new Blob([JSON.stringify({ jid, sid, rid })], { type: 'application/json' }));
}

const STROPHE_SESSION = 'strophe-bosh-session';
const CONVERSE_SESSION = 'converse.bosh-session';

/**
 * Drops a BOSH session kept in sessionStorage (Converse's keepalive) that is not `jid`'s:
 * another account (bare JIDs differ), or anything but an anonymous session on `jid` when
 * `jid` is a domain. Returns true when one was dropped.
 */
export function forgetOtherSessions(jid) {
  let stored;
  try {
    stored = JSON.parse(sessionStorage.getItem(STROPHE_SESSION))?.jid;
  } catch {
    stored = undefined;
  }
  if (typeof stored !== 'string') return false;
  const bare = (j) => j.split('/')[0].toLowerCase();
  const wanted = bare(jid);
  const ours = wanted.includes('@') ? bare(stored) === wanted : bare(stored).split('@')[1] === wanted;
  if (ours) return false;
  forgetStoredSession();
  return true;
}

/** Forgets the BOSH session of Converse's keepalive (logout does it too, when it completes). */
export function forgetStoredSession() {
  for (const key of [STROPHE_SESSION, CONVERSE_SESSION, `${CONVERSE_SESSION}-${CONVERSE_SESSION}`]) {
    sessionStorage.removeItem(key);
  }
}

/**
 * Ends an injected session nobody attached to (Converse restored its stored one
 * instead), at once rather than after the CM's inactivity timeout: one `terminate`
 * request, sent in the background.
 */
function releaseUnusedSession(snippet, boshUrl) {
  const body = `<body xmlns='http://jabber.org/protocol/httpbind' rid='${snippet.rid}' sid='${xmlAttr(snippet.sid)}' type='terminate'/>`;
  fetch(boshUrl, { method: 'POST', body, keepalive: true, headers: { 'Content-Type': 'text/xml; charset=utf-8' } })
    .catch(() => {}); // best effort: it expires at the CM anyway
}

/**
 * Session reuse across page views (`PrebindLayer::reuse_cookie`): while Converse holds a
 * live session, the tab's next navigation carries `cookie`, so the server sends the reuse
 * marker instead of a new session and Converse restores from its keepalive store.
 * (Converse's restore resumes at the next RID: unlike the Strophe demo page, it does not
 * re-send a long-poll the browser aborted, XEP-0124 §14.3.)
 */
function keepAcrossPages(api, cookie) {
  document.cookie = `${cookie}=; path=/; max-age=0`; // said once
  addEventListener('beforeunload', () => { // before the next page's request goes out
    if (api.connection.connected()) document.cookie = `${cookie}=1; path=/; max-age=10; samesite=strict`;
  });
}

const xmlAttr = (value) => String(value).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');

/**
 * Starts Converse with the page's injected session. `settings` are Converse's own
 * (`jid`: the bare JID the page is for, or the anonymous domain: Converse then refuses a
 * stored session of anyone else); `authentication`, `auto_login`, `prebind_url` and
 * (unless given) `bosh_service_url` (the snippet's, else '/http-bind') are set here. `onConnected({api, jid, method,
 * snippet})` runs once connected: `method` is 'injected' (attached to the injected
 * session), 'restored' (keepalive), 'prebind' (GET `fallback`) or 'reuse' (a reuse
 * marker, but nothing to restore: GET `fallback`). `reuseCookie`: the reuse cookie's name,
 * to keep the session across page views (see keepAcrossPages); none by default.
 */
export async function startConverse(converse, settings, { snippet = injectedSnippet(), fallback = '/prebind', onConnected, reuseCookie } = {}) {
  const { jid, ...rest } = settings;
  if (jid) forgetOtherSessions(jid);
  const url = prebindUrl(snippet, fallback);
  // Sessions and reuse markers both carry the layer's bosh_service_url.
  const boshUrl = typeof snippet?.bosh_service_url === 'string' ? snippet.bosh_service_url : '/http-bind';
  let method = url !== fallback ? 'injected' : isReuseSnippet(snippet) ? 'reuse' : 'prebind';
  let reported = false;
  converse.plugins.add('bosh-prebind', {
    initialize() {
      const { api } = this._converse;
      if (reuseCookie) keepAcrossPages(api, reuseCookie);
      // A hook that runs after Converse's own login hook, which has restored a stored
      // session or sent its GET to prebind_url by now: from here on (reconnects) the
      // injected session is spent, so GET the fallback.
      api.listen.on('login', (_, payload) => {
        if (!reported && api.connection.get()?.restored) {
          if (method === 'injected') releaseUnusedSession(snippet, boshUrl);
          method = 'restored';
        }
        if (url !== fallback) {
          api.settings.set('prebind_url', fallback);
          URL.revokeObjectURL(url);
        }
        return payload;
      });
      api.listen.on('connected', () => {
        if (reported) return;
        reported = true;
        onConnected?.({ api, jid: api.user.jid(), method, snippet });
      });
    },
  });
  await converse.initialize({
    bosh_service_url: boshUrl,
    ...rest,
    // An account's bare JID: Converse refuses a stored session of anyone else.
    ...(jid?.includes('@') ? { jid } : {}),
    authentication: 'prebind',
    auto_login: true,
    prebind_url: url,
    whitelisted_plugins: [...(settings.whitelisted_plugins ?? []), 'bosh-prebind'],
  });
}
