// Session reuse across page views (README "Sessions across page views"), in headless
// Chromium against the demo's `/` (examples/demo/demo.js) and a real Prosody:
//
//   node --test browser/reuse.test.mjs     (scripts/test.sh runs all of browser/)
//
// Needs target/debug/examples/demo, `npm ci --prefix browser`, Debian's chromium and
// BOSH_PREBIND_TEST_BOSH_URL (scripts/prosody.sh); skipped without that URL, except under
// CI=true, where they fail.
//
// How live sessions are counted at the CM (liveSessions below): the test Prosody has no
// admin shell, and a BOSH request on a session's SID changes it (a wrong RID is answered
// item-not-found whether or not the session exists; a right one keeps it alive). So each
// session is probed through XMPP routing, which Prosody decides from its table of bound
// resources: one BOSH request of a fresh observer session carries an XEP-0199 ping to the
// full JID of every session ever handed out, then a ping to the server. For a JID with no
// live session Prosody answers service-unavailable at once (mod_iq, synchronously while it
// routes the request's stanzas); a live one gets the ping delivered and nothing comes
// back. The server's answer to the last ping is generated after all of them, so once it
// is in, a probe without an answer is a live session: no timeout decides anything. Every
// session the demo made is probed: its /stats count of handshakes must equal the number
// of distinct JIDs the pages were given.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';

import { launchChromium } from './chromium.mjs';
import { example, startServer } from './processes.mjs';

const BOSH_URL = process.env.BOSH_PREBIND_TEST_BOSH_URL;
const CI = process.env.CI === 'true';
const skip = !BOSH_URL && !CI
  ? 'BOSH_PREBIND_TEST_BOSH_URL is not set: no Prosody to test against (scripts/test.sh starts one)'
  : false;
const PAGE_TIMEOUT_MS = 20000;
const NAVIGATIONS = 20;
const NS_BOSH = 'http://jabber.org/protocol/httpbind';

function boshUrl() {
  assert.ok(BOSH_URL, 'BOSH_PREBIND_TEST_BOSH_URL is not set (CI=true): the browser tests need the test Prosody');
  return BOSH_URL;
}

let browser;
after(async () => {
  await browser?.close();
});

/**
 * `fn(t)`: `t.start(args)` starts the demo and returns its origin, `t.tab()` opens a tab
 * in a fresh browser context. Servers and contexts are stopped in any case; on failure
 * the servers' output and the pages' BOSH logs are printed.
 */
function reuseTest(name, fn) {
  test(name, { skip, timeout: 180000 }, async () => {
    const children = [];
    const contexts = [];
    const pages = [];
    const t = {
      async start(args = []) {
        const { child, url } = await startServer('demo', example('demo'), (port) => [
          '--listen', `127.0.0.1:${port}`, '--bosh-url', boshUrl(), ...args,
        ]);
        children.push(child);
        return url;
      },
      async tab() {
        browser ??= await launchChromium();
        const context = await browser.newContext();
        contexts.push(context);
        const page = await context.newPage();
        pages.push(page);
        const errors = [];
        page.on('pageerror', (error) => errors.push(error));
        let prebindRequests = 0;
        page.on('request', (request) => {
          if (new URL(request.url()).pathname === '/prebind') prebindRequests += 1;
        });
        return {
          page,
          context,
          /** Clicks the page's "next page" link to `url` (or goes there first) and waits for the new page's result. */
          async navigate(url) {
            const before = prebindRequests;
            if (page.url().startsWith('http')) {
              await page.evaluate((href) => { document.getElementById('next').href = href; }, url);
              await Promise.all([page.waitForURL(url), page.click('#next')]);
            } else {
              await page.goto(url);
            }
            await page.waitForFunction(() => window.__prebindResult, null, { timeout: PAGE_TIMEOUT_MS });
            const result = await page.evaluate(() => window.__prebindResult);
            const snippet = JSON.parse(await page.locator('#xmpp-prebind').textContent({ timeout: 1000 }));
            assert.deepEqual(errors, [], 'no uncaught errors in the page');
            return { result, snippet, prebindRequests: prebindRequests - before };
          },
        };
      },
    };
    try {
      await fn(t);
    } catch (error) {
      for (const page of pages) {
        const log = await page.locator('#log').textContent({ timeout: 1000 }).catch(() => '(no log)');
        console.error(`---- ${name}: page ${page.url()} BOSH log (tail) ----\n${log.slice(-4000)}`);
      }
      console.error(`---- ${name}: failed ----\n${children.map((child) => child.describe()).join('\n')}`);
      throw error;
    } finally {
      await Promise.all(contexts.map((context) => context.close()));
      await Promise.all(children.map((child) => child.stop()));
    }
  });
}

async function handshakes(origin) {
  const response = await fetch(`${origin}/stats`);
  assert.equal(response.status, 200);
  return (await response.json()).handshakes;
}

const xmlAttr = (value) => String(value).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/'/g, '&apos;');

async function boshPost(origin, body) {
  const response = await fetch(`${origin}/http-bind`, {
    method: 'POST',
    headers: { 'Content-Type': 'text/xml; charset=utf-8' },
    body,
    signal: AbortSignal.timeout(30000),
  });
  assert.equal(response.status, 200);
  return response.text();
}

/**
 * A separate XMPP client: an anonymous session of its own (GET /prebind on the demo),
 * used from Node. `exchange(stanzas)` sends them in one request followed by a ping to the
 * server, and returns everything the CM answered up to that ping's reply; `end()`
 * terminates the session.
 */
async function observer(origin) {
  const response = await fetch(`${origin}/prebind`);
  assert.equal(response.status, 200);
  const session = await response.json();
  assert.ok(session.sid, `GET /prebind: ${JSON.stringify(session)}`);
  let rid = session.rid; // the next RID
  const domain = session.jid.split('@')[1].split('/')[0];
  const body = (content, extra = '') => `<body xmlns='${NS_BOSH}' sid='${xmlAttr(session.sid)}' rid='${rid++}'${extra}>${content}</body>`;
  return {
    jid: session.jid,
    async exchange(stanzas) {
      const barrier = `barrier-${rid}`;
      let answers = await boshPost(origin, body(`${stanzas.join('')}<iq xmlns='jabber:client' type='get' id='${barrier}' to='${domain}'><ping xmlns='urn:xmpp:ping'/></iq>`));
      // Prosody sends what it has once the request's stanzas are processed; should any
      // answer come later, an empty request fetches it.
      while (!answers.includes(`id='${barrier}'`) && !answers.includes(`id="${barrier}"`)) {
        assert.doesNotMatch(answers, /type=['"]terminate['"]/, 'the observer session ended');
        answers += await boshPost(origin, body(''));
      }
      return answers;
    },
    async end() {
      await boshPost(origin, body('', " type='terminate'"));
    },
  };
}

/** How many of `jids` have a live session at the CM (see the file's header). */
async function liveSessions(origin, jids) {
  const probe = await observer(origin);
  const pings = jids.map((jid, i) => `<iq xmlns='jabber:client' type='get' id='probe-${i}' to='${xmlAttr(jid)}'><ping xmlns='urn:xmpp:ping'/></iq>`);
  const answers = await probe.exchange(pings);
  await probe.end();
  const gone = jids.filter((_, i) => new RegExp(`id=['"]probe-${i}['"][^>]*type=['"]error['"]|type=['"]error['"][^>]*id=['"]probe-${i}['"]`).test(answers));
  for (const [i] of jids.entries()) {
    const answered = new RegExp(`id=['"]probe-${i}['"]`).test(answers);
    // An answer other than an error would mean the server answered for a live resource.
    assert.ok(!answered || gone.includes(jids[i]), `probe ${i}: ${answers}`);
  }
  return jids.length - gone.length;
}

/** Clicks through NAVIGATIONS pages in one tab; returns each page's result. */
async function clickThrough(t, origin) {
  const tab = await t.tab();
  const before = await handshakes(origin);
  const loads = [];
  for (let n = 1; n <= NAVIGATIONS; n++) {
    loads.push(await tab.navigate(`${origin}/?page=${n}`));
  }
  const made = (await handshakes(origin)) - before;
  return { tab, loads, made };
}

const round = (ms) => Math.round(ms);
const median = (values) => {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
};

/** NAVIGATIONS page views in one tab without and with reuse: live sessions, ready times. */
async function navigations(t, who, args = []) {
  const figures = {};
  for (const reuse of [false, true]) {
    const origin = await t.start([...args, ...(reuse ? [] : ['--reuse-cookie', ''])]);
    const { loads, made } = await clickThrough(t, origin);
    for (const [i, { result }] of loads.entries()) {
      assert.ok(!result.error, `page ${i + 1}: ${JSON.stringify(result)}`);
    }
    const jids = [...new Set(loads.map(({ result }) => result.jid))];
    const methods = loads.map(({ result }) => result.method);
    if (reuse) {
      assert.equal(methods[0], 'injected', 'the first page gets a session');
      assert.deepEqual(methods.slice(1), Array(NAVIGATIONS - 1).fill('reused'), 'every later page re-attaches');
      assert.ok(loads.slice(1).every(({ snippet }) => snippet.reuse === true && !snippet.sid), 'later pages carry the reuse marker, no session');
      assert.equal(jids.length, 1, 'one session throughout');
    } else {
      assert.deepEqual(methods, Array(NAVIGATIONS).fill('injected'));
      assert.equal(jids.length, NAVIGATIONS, 'a session per page');
    }
    assert.ok(loads.every(({ prebindRequests }) => prebindRequests === 0), 'no /prebind request');
    // Every session the demo made is one of the probed JIDs.
    assert.equal(made, jids.length, 'sessions made = distinct sessions the pages got');
    const live = await liveSessions(origin, jids);
    const ready = loads.map(({ result }) => round(result.navToPingMs));
    figures[reuse] = ready;
    console.log(`${who}, ${reuse ? 'with reuse   ' : 'without reuse'}: ${NAVIGATIONS} navigations → ${made} session(s) made, ${live} live at the CM; `
      + `session ready (navigation start → ping reply, ms) per page: ${ready.join(' ')} (median ${median(ready)})`);
    if (reuse) {
      assert.ok(live <= 2, `at most 2 live sessions with reuse, got ${live}`);
      assert.equal(live, 1);
    } else {
      assert.equal(live, NAVIGATIONS, 'before: every page left a live session behind');
    }
  }
  // Re-attaching is as fast as an injected session: both are ready after one request
  // (a loose bound: the machine is shared).
  assert.ok(median(figures[true].slice(1)) <= 2 * median(figures[false]) + 50,
    `reused pages ready in ${median(figures[true].slice(1))} ms (median), injected ones in ${median(figures[false])} ms`);
}

reuseTest(`${NAVIGATIONS} navigations in one tab: one live session at the CM with reuse, ${NAVIGATIONS} without`, async (t) => {
  await navigations(t, 'anonymous');
});

reuseTest(`an account: ${NAVIGATIONS} navigations leave one online resource with reuse, ${NAVIGATIONS} without`, async (t) => {
  await navigations(t, 'bob@localhost', ['--jid', 'bob@localhost', '--password', 'secret-bob']);
});

/**
 * Page 1 gets message m1 in a long-poll answer the browser never receives, then the tab
 * navigates to page 2; returns page 2's result and the messages it got by the time a
 * later message, m2, arrived. With `resend` false, page 2 drops what the previous page
 * left to re-send: Strophe.js keepalive's own restore (at the next RID).
 */
async function abortedLongPoll(t, { resend }) {
  const origin = await t.start();
  const tab = await t.tab();
  // Every BOSH request of the tab goes through the test, so that it can hold back the
  // answer to one long-poll: the page leaves with that request unanswered, exactly as
  // when the browser aborts a long-poll the CM had already answered.
  const marker = 'first-message';
  const held = {};
  held.seen = new Promise((resolve) => { held.resolveSeen = resolve; });
  let armed = false;
  let armNext = false;
  await tab.page.route('**/http-bind', async (route) => {
    if (armed) {
      armed = false;
      held.rid = Number(/rid=['"](\d+)/.exec(route.request().postData())[1]);
      held.answer = route.fetch({ timeout: 0 }).then((response) => response.text());
      held.resolveSeen();
      return; // never fulfilled: the page leaves first
    }
    let response;
    try {
      response = await route.fetch({ timeout: 0 });
    } catch {
      return; // the page went away meanwhile
    }
    // The request Strophe.js sends after handling the first message is the one held.
    if (armNext && (await response.text()).includes(marker)) {
      armNext = false;
      armed = true;
    }
    await route.fulfill({ response }).catch(() => {});
  });

  const first = await tab.navigate(`${origin}/?page=1`);
  assert.equal(first.result.method, 'injected');
  const user = first.result.jid;
  const other = await observer(origin);
  const message = (id, text) => `<message xmlns='jabber:client' type='chat' id='${id}' to='${xmlAttr(user)}'><body>${text}</body></message>`;
  const received = (id) => tab.page.waitForFunction((wanted) => window.__messages.some((m) => m.id === wanted), id, { timeout: PAGE_TIMEOUT_MS });

  armNext = true;
  await other.exchange([message('m0', marker)]);
  await received('m0');
  await held.seen; // the page's next long-poll is held by the test
  await other.exchange([message('m1', 'sent while the tab navigates')]);
  assert.match(await held.answer, /id=['"]m1['"]/, 'the CM answered the held long-poll with the message');
  assert.equal(await tab.page.evaluate(() => window.__messages.some((m) => m.id === 'm1')), false, 'the first page never got it');

  if (!resend) {
    await tab.page.addInitScript(() => {
      const stored = JSON.parse(sessionStorage.getItem('strophe-bosh-session'));
      if (stored) sessionStorage.setItem('strophe-bosh-session', JSON.stringify({ ...stored, resend: [] }));
    });
  }
  // Navigate: the page leaves with that request unanswered.
  const second = await tab.navigate(`${origin}/?page=2`);
  assert.equal(second.result.method, 'reused');
  assert.equal(second.result.jid, user, 'the same session');
  if (resend) await received('m1');
  // m1 was only in the CM's answer to held.rid: once m2, sent now, is in, page 2 got
  // m1 already or never will.
  await other.exchange([message('m2', 'after the navigation')]);
  await received('m2');
  const messages = await tab.page.evaluate(() => window.__messages.map((m) => m.id));
  await tab.page.unrouteAll({ behavior: 'ignoreErrors' });
  await other.end();
  return { second, messages, rid: held.rid };
}

reuseTest('a message in the long-poll the browser aborts on leaving arrives on the next page (XEP-0124 §14.3)', async (t) => {
  const { second, messages, rid } = await abortedLongPoll(t, { resend: true });
  assert.ok(second.result.resent.includes(rid), `the next page re-sent the unanswered RID: ${JSON.stringify(second.result)}`);
  assert.equal(second.result.attachRid, rid + 1, 'and went on after it');
  assert.deepEqual(messages.filter((id) => id === 'm1'), ['m1'], 'm1 arrived once, on the next page');
  console.log(`message across navigation: m1 was in the answer to rid ${rid}, never seen by page 1, `
    + `received on page 2 (re-sent rid ${second.result.resent.join(', ')}, went on at rid ${second.result.attachRid}); page 2 got ${messages.join(', ')}`);
});

reuseTest('before: Strophe.js keepalive restore alone (no re-send) loses that message', async (t) => {
  const { second, messages, rid } = await abortedLongPoll(t, { resend: false });
  assert.deepEqual(second.result.resent, []);
  assert.equal(second.result.attachRid, rid + 1);
  assert.deepEqual(messages, ['m2'], 'm1 is lost');
  console.log(`without the re-send: page 2 got ${messages.join(', ')}; m1 (answer to rid ${rid}) lost`);
});

reuseTest('a kept session that is gone: the next page GETs /prebind at once, no full login', async (t) => {
  const origin = await t.start();
  const tab = await t.tab();
  const first = await tab.navigate(`${origin}/?page=1`);
  assert.equal(first.result.method, 'injected');
  // What an expired session looks like to the next page: the CM knows its SID no more.
  await tab.page.addInitScript(() => {
    const stored = JSON.parse(sessionStorage.getItem('strophe-bosh-session'));
    if (stored) sessionStorage.setItem('strophe-bosh-session', JSON.stringify({ ...stored, sid: `expired-${stored.sid}` }));
  });
  const before = await handshakes(origin);
  const second = await tab.navigate(`${origin}/?page=2`);
  assert.equal(second.snippet.reuse, true, 'the page asked for reuse');
  assert.equal(second.result.method, 'prebind', JSON.stringify(second.result));
  assert.match(second.result.reuseFailed, /item-not-found/);
  assert.equal(second.prebindRequests, 1, 'one GET /prebind');
  assert.equal((await handshakes(origin)) - before, 1, 'one session made (no anonymous login of its own)');
  assert.notEqual(second.result.jid, first.result.jid);
  console.log(`dead kept session: ${second.result.reuseFailed} → GET /prebind, ready ${round(second.result.navToPingMs)} ms after navigation start`);
});
