// Strophe.js 5 in headless Chromium against the demo, the gateway and a real Prosody:
//
//   node --test browser/        (scripts/test.sh runs it after `cargo test`)
//
// Needs the built demo (target/debug/examples/demo), the installed gateway
// (target/gateway-install/bin/bosh-prebind-gateway from `cargo install --path gateway`,
// or $BOSH_PREBIND_GATEWAY_BIN), `npm ci --prefix browser`, Debian's chromium, and BOSH_PREBIND_TEST_BOSH_URL pointing at the test
// Prosody (scripts/prosody.sh). Without that URL the tests are skipped, except under
// CI=true, where they fail.
//
// Each test starts its servers as child processes on free loopback ports, waits until
// they answer HTTP, drives one page to "connected as …" plus an XEP-0199 ping reply, and
// stops the servers again. The pages ping in the very first request after attach, so a
// reply proves the handed-over rid was exactly right (rid too low: the CM replays an old
// response and drops the ping; too high: it parks the request).
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';

import { launchChromium } from './chromium.mjs';
import { ROOT, example, gatewayBinary, startServer } from './processes.mjs';

const BOSH_URL = process.env.BOSH_PREBIND_TEST_BOSH_URL;
const CI = process.env.CI === 'true';
const skip = !BOSH_URL && !CI
  ? 'BOSH_PREBIND_TEST_BOSH_URL is not set: no Prosody to test against (scripts/test.sh starts one)'
  : false;
const STROPHE = path.join(ROOT, 'browser/node_modules/strophe.js/dist/strophe.umd.min.js');
const PAGE_TIMEOUT_MS = 20000;

function boshUrl() {
  assert.ok(BOSH_URL, 'BOSH_PREBIND_TEST_BOSH_URL is not set (CI=true): the browser tests need the test Prosody');
  return BOSH_URL;
}

let browser;
async function chromium() {
  browser ??= await launchChromium();
  return browser;
}
after(async () => {
  await browser?.close();
});

/**
 * A browser test: `fn(session)` starts servers with `session.start(...)` and opens pages
 * with `session.open(url)`; on failure the page's BOSH log and every server's output are
 * printed; servers and the browser context are stopped in any case.
 */
function browserTest(name, fn, { needsProsody = true, skipUnless = null } = {}) {
  // `skipUnless`: [value, reason]: skipped (failed under CI=true) when `value` is unset.
  const missing = skipUnless && !skipUnless[0] ? skipUnless[1] : false;
  test(name, { skip: (needsProsody && skip) || (!CI && missing), timeout: 90000 }, async () => {
    assert.ok(!missing, `${missing} (CI=true)`);
    const children = [];
    let context;
    let page;
    const session = {
      async start(label, command, args) {
        const { child, url } = await startServer(label, command, args);
        children.push(child);
        return url;
      },
      /** Resolves with the first match of `pattern` in the output of the server named `label`. */
      async waitForOutput(label, pattern, timeoutMs = 5000) {
        const child = children.find((c) => c.name === label);
        const deadline = Date.now() + timeoutMs;
        for (;;) {
          const match = pattern.exec(child.output.replace(/\x1b\[[0-9;]*m/g, ''));
          if (match) return match;
          assert.ok(Date.now() < deadline, `${label} never logged ${pattern}`);
          // The output arrives through a pipe: wait for the next chunk of it.
          await new Promise((resolve) => child.process.stdout.once('data', resolve).once('end', resolve));
        }
      },
      async open(url) {
        context = await (await chromium()).newContext();
        page = await context.newPage();
        const posts = [];
        page.on('request', (request) => {
          if (request.method() === 'POST') posts.push({ url: new URL(request.url()), body: request.postData() ?? '' });
        });
        const pageErrors = [];
        page.on('pageerror', (error) => pageErrors.push(error));
        const prebindAnswer = page
          .waitForResponse((response) => new URL(response.url()).pathname === '/prebind', { timeout: PAGE_TIMEOUT_MS })
          .then((response) => response.text(), () => null);
        await page.goto(url, { timeout: PAGE_TIMEOUT_MS });
        // Bounded wait for the page's own verdict (success or a reported failure).
        await page.waitForFunction(() => window.__prebindResult, null, { timeout: PAGE_TIMEOUT_MS });
        const result = await page.evaluate(() => window.__prebindResult);
        assert.deepEqual(pageErrors, [], 'no uncaught errors in the page');
        return { page, result, posts, prebindAnswer };
      },
    };
    try {
      await fn(session);
    } catch (error) {
      const log = page ? await page.locator('#log').textContent({ timeout: 1000 }).catch(() => '') : '';
      console.error(`---- ${name}: failed; page log ----\n${log}\n${children.map((child) => child.describe()).join('\n')}`);
      throw error;
    } finally {
      await context?.close();
      await Promise.all(children.map((child) => child.stop()));
    }
  });
}

function startDemo(session, ...extra) {
  return session.start('demo', example('demo'), (port) => [
    '--listen', `127.0.0.1:${port}`, '--bosh-url', boshUrl(), ...extra,
  ]);
}

const ANONYMOUS_JID = /^[^@/\s]+@anon\.localhost\/\S+$/;

/**
 * The page says "connected as JID", got a ping reply, and its BOSH requests went to
 * /http-bind on its own origin, the first of them with the attach rid and the ping.
 */
async function assertConnected({ page, result, posts }, origin, { method, jid }) {
  assert.equal(result.error, undefined, `the page reported a failure: ${result.error}`);
  assert.equal(result.method, method);
  assert.match(result.jid, jid);
  assert.equal(await page.locator('#status').textContent(), `connected as ${result.jid}`);
  assert.ok(Number.isFinite(result.pingMs) && result.pingMs >= 0, `ping round trip: ${result.pingMs}`);
  assert.match(await page.locator('#ping-ms').textContent(), /^\d+(\.\d+)?$/);
  assert.ok(result.navToPingMs > 0, `navigation→ping: ${result.navToPingMs}`);

  const bosh = posts.filter((post) => post.url.pathname !== '/prebind' && post.body.includes('http://jabber.org/protocol/httpbind'));
  assert.ok(bosh.length > 0, 'the page sent BOSH requests');
  for (const post of bosh) {
    assert.equal(`${post.url.origin}${post.url.pathname}`, `${origin}/http-bind`, 'BOSH goes to /http-bind on the page\'s origin');
  }
  if (method !== 'fallback') {
    const [first] = bosh;
    assert.equal(Number(/\brid=['"](\d+)['"]/.exec(first.body)?.[1]), result.attachRid, 'the first request after attach carries the attach rid');
    assert.ok(first.body.includes('urn:xmpp:ping'), `the first request after attach carries the ping: ${first.body}`);
  }
}

async function injectedSnippet(page) {
  const text = await page.locator('#xmpp-prebind').textContent({ timeout: 1000 });
  return JSON.parse(text);
}

function report(name, result) {
  console.log(`${name}: navigation→ping: ${Math.round(result.navToPingMs)} ms (ping round trip ${result.pingMs.toFixed(1)} ms, ${result.jid})`);
}

browserTest('injected page attaches with the snippet\'s rid and pings', async (session) => {
  const origin = await startDemo(session);
  const opened = await session.open(`${origin}/`);
  await assertConnected(opened, origin, { method: 'injected', jid: ANONYMOUS_JID });
  const snippet = await injectedSnippet(opened.page);
  assert.equal(snippet.jid, opened.result.jid, 'connected with the injected JID');
  assert.equal(snippet.rid, opened.result.attachRid, 'attached with the injected rid unchanged (the NEXT rid)');
  assert.equal(snippet.bosh_service_url, '/http-bind');
  report('injected', opened.result);
});

browserTest('classic page POSTs to /prebind, attaches with rid + 1 and pings', async (session) => {
  const origin = await startDemo(session);
  const opened = await session.open(`${origin}/classic.html`);
  await assertConnected(opened, origin, { method: 'post', jid: ANONYMOUS_JID });
  assert.equal(await opened.page.locator('#xmpp-prebind').count(), 0, '/classic.html is not injected');
  const answer = await opened.prebindAnswer;
  assert.ok(answer, 'the page POSTed to /prebind');
  assert.equal(Number(/\brid=['"](\d+)['"]/.exec(answer)?.[1]), opened.result.prebindRid, 'the answer\'s rid (the LAST used one)');
  assert.equal(opened.result.attachRid, opened.result.prebindRid + 1, 'attached with the answer\'s rid + 1');
  report('classic', opened.result);
});

browserTest('gateway injects a session into a static upstream page and forwards /http-bind', async (session) => {
  const gateway = gatewayBinary(); // fails here, with how to install it, if it is missing
  const site = mkdtempSync(path.join(os.tmpdir(), 'bosh-prebind-site-'));
  try {
    // The demo's own page, served by a plain static server that knows nothing of XMPP.
    for (const file of ['index.html', 'demo.js', 'demo.css']) {
      copyFileSync(path.join(ROOT, 'examples/demo', file), path.join(site, file));
    }
    mkdirSync(path.join(site, 'vendor'));
    copyFileSync(STROPHE, path.join(site, 'vendor/strophe.js'));
    const upstream = await session.start('upstream', 'python3', (port) => [
      '-u', '-m', 'http.server', String(port), '--bind', '127.0.0.1', '--directory', site,
    ]);
    const origin = await session.start('gateway', gateway, (port) => [
      '--listen', `127.0.0.1:${port}`, '--upstream', upstream, '--bosh-url', boshUrl(),
      '--domain', 'anon.localhost', '--inject-prefix', '/',
    ]);
    const opened = await session.open(`${origin}/`);
    await assertConnected(opened, origin, { method: 'injected', jid: ANONYMOUS_JID });
    const snippet = await injectedSnippet(opened.page);
    assert.equal(snippet.rid, opened.result.attachRid);
    report('gateway', opened.result);
  } finally {
    rmSync(site, { recursive: true, force: true });
  }
});

browserTest('injected page of an account (SCRAM-SHA-1) attaches as that account', async (session) => {
  const origin = await startDemo(session, '--jid', 'bob@localhost', '--password', 'secret-bob');
  const opened = await session.open(`${origin}/`);
  await assertConnected(opened, origin, { method: 'injected', jid: /^bob@localhost\/\S+$/ });
  assert.equal((await injectedSnippet(opened.page)).rid, opened.result.attachRid);
  report('account', opened.result);
});

// A session made with SASL2 + Bind 2 (XEP-0388, XEP-0386) on Prosody 13: 3 round trips
// for SCRAM instead of 5, no stream restart; the browser attaches to it like any other.
const PROSODY13_URL = process.env.BOSH_PREBIND_TEST_PROSODY13_URL;
browserTest('a SASL2 + Bind 2 session (Prosody 13) attaches and pings', async (session) => {
  const origin = await session.start('demo', example('demo'), (port) => [
    '--listen', `127.0.0.1:${port}`, '--bosh-url', PROSODY13_URL,
    '--jid', 'alice@localhost', '--password', 'secret-alice',
  ]);
  const opened = await session.open(`${origin}/`);
  await assertConnected(opened, origin, { method: 'injected', jid: /^alice@localhost\/\S+$/ });
  assert.equal((await injectedSnippet(opened.page)).rid, opened.result.attachRid);
  // The demo logs every outcome (on_outcome): this one took SASL2's 3 round trips.
  const [, mechanism, roundTrips] = await session.waitForOutput(
    'demo', /prebind outcome .*mechanism="?([\w-]+)"? round_trips=(\d+)/);
  assert.equal(mechanism, 'SCRAM-SHA-1');
  assert.equal(Number(roundTrips), 3, 'SASL2 + Bind 2: 3 round trips (classic: 5)');
  report('sasl2', opened.result);
}, { skipUnless: [PROSODY13_URL, 'BOSH_PREBIND_TEST_PROSODY13_URL is not set: no Prosody 13 (scripts/test.sh starts one)'] });

// ejabberd 23.01 (scripts/ejabberd.sh): the same injected page, attached through the demo's
// same-origin pass-through to ejabberd's /bosh.
const EJABBERD_URL = process.env.BOSH_PREBIND_TEST_EJABBERD_URL;
browserTest('injected page on ejabberd attaches and pings', async (session) => {
  const origin = await session.start('demo', example('demo'), (port) => [
    '--listen', `127.0.0.1:${port}`, '--bosh-url', EJABBERD_URL,
  ]);
  const opened = await session.open(`${origin}/`);
  await assertConnected(opened, origin, { method: 'injected', jid: ANONYMOUS_JID });
  assert.equal((await injectedSnippet(opened.page)).rid, opened.result.attachRid);
  report('ejabberd', opened.result);
}, { skipUnless: [EJABBERD_URL, 'BOSH_PREBIND_TEST_EJABBERD_URL is not set: no ejabberd (scripts/test.sh starts one)'] });

browserTest('injected error makes the page fall back to an anonymous login', async (session) => {
  const origin = await startDemo(session, '--jid', 'bob@localhost', '--password', 'not-bobs-password');
  const opened = await session.open(`${origin}/`);
  const snippet = await injectedSnippet(opened.page);
  assert.equal(snippet.condition, 'not-authorized', `the injected error: ${JSON.stringify(snippet)}`);
  await assertConnected(opened, origin, { method: 'fallback', jid: ANONYMOUS_JID });
  assert.equal(opened.result.prebindError, 'not-authorized');
  assert.match(await opened.page.locator('#method').textContent(), /pre-bind failed \(not-authorized\)/);
  report('fallback', opened.result);
});

browserTest('without Strophe.js the page says how to install it', async (session) => {
  const origin = await session.start('demo', example('demo'), (port) => [
    '--listen', `127.0.0.1:${port}`, '--strophe', path.join(os.tmpdir(), 'no-such-dir', 'strophe.js'),
  ]);
  const { page, result } = await session.open(`${origin}/classic.html`);
  assert.match(result.error, /Strophe\.js not loaded/);
  assert.ok(await page.locator('#help').isVisible(), 'the install hint is shown');
  assert.match(await page.locator('#help').textContent(), /npm ci --prefix browser/);
}, { needsProsody: false });

// Real-size chat traffic through the same-origin pass-through (its answers are
// streamed, not capped at the handshake's 64 KiB): a vCard (XEP-0054) with a
// 200+ KiB photo stored and fetched back, and a 500-item roster fetched whole.
browserTest('a 200 KiB vCard photo and a 500-item roster go through /http-bind whole', async (session) => {
  const origin = await startDemo(session, '--jid', 'alice@localhost', '--password', 'secret-alice');
  const opened = await session.open(`${origin}/`);
  await assertConnected(opened, origin, { method: 'injected', jid: /^alice@localhost\/\S+$/ });
  const outcome = await opened.page.evaluate(async () => {
    const conn = window.__conn;
    const $iq = window.$iq ?? window.Strophe.$iq; // a global of strophe.umd, not on Strophe
    const iq = (stanza) => new Promise((resolve, reject) => {
      conn.sendIQ(stanza, resolve, (error) => reject(new Error(`iq failed: ${error ? error.outerHTML : 'timeout'}`)), 30000);
      conn.flush();
    });
    // 160 000 random bytes -> 213 336 base64 characters.
    const bytes = new Uint8Array(160000);
    for (let i = 0; i < bytes.length; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
    let binary = '';
    for (const b of bytes) binary += String.fromCharCode(b);
    const photo = btoa(binary);
    await iq($iq({ type: 'set' }).c('vCard', { xmlns: 'vcard-temp' })
      .c('FN').t('Alice').up()
      .c('PHOTO').c('TYPE').t('image/png').up().c('BINVAL').t(photo));
    const vcard = await iq($iq({ type: 'get' }).c('vCard', { xmlns: 'vcard-temp' }));
    const fetched = vcard.getElementsByTagName('BINVAL')[0]?.textContent ?? '';

    // 500 roster items (RFC 6121 §2.3: one item per set), in batches.
    const items = [];
    for (let i = 0; i < 500; i++) items.push(`contact${String(i).padStart(3, '0')}@localhost`);
    for (let i = 0; i < items.length; i += 50) {
      await Promise.all(items.slice(i, i + 50).map((jid) =>
        iq($iq({ type: 'set' }).c('query', { xmlns: 'jabber:iq:roster' }).c('item', { jid, name: `Contact ${jid}` }))));
    }
    const roster = await iq($iq({ type: 'get' }).c('query', { xmlns: 'jabber:iq:roster' }));
    const rosterJids = [...roster.getElementsByTagName('item')].map((item) => item.getAttribute('jid'));
    // Leave the account as it was for other tests.
    for (let i = 0; i < items.length; i += 50) {
      await Promise.all(items.slice(i, i + 50).map((jid) =>
        iq($iq({ type: 'set' }).c('query', { xmlns: 'jabber:iq:roster' }).c('item', { jid, subscription: 'remove' }))));
    }
    return { photoLength: photo.length, fetchedSame: fetched.replace(/\s+/g, '') === photo, rosterJids };
  });
  assert.ok(outcome.photoLength >= 200 * 1024, `photo of ${outcome.photoLength} base64 characters`);
  assert.ok(outcome.fetchedSame, 'the vCard photo came back whole');
  for (let i = 0; i < 500; i++) {
    const jid = `contact${String(i).padStart(3, '0')}@localhost`;
    assert.ok(outcome.rosterJids.includes(jid), `roster item ${jid} came back`);
  }
  console.log(`large traffic: vCard photo ${outcome.photoLength} base64 characters, roster of ${outcome.rosterJids.length} items`);
});
