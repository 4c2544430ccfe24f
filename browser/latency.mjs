// Session-ready time in a real browser with emulated latency (docs/design.md §5):
// navigation start → first XEP-0199 ping reply, in headless Chromium, for
//
//   injected  the demo's `/`: the session is in the page (0 round trips to get it)
//   post      the demo's `/classic.html`: POST /prebind, then attach (1 round trip)
//   connect   the same page with no session in it (browser/bench/static.mjs):
//             demo.js falls back to a normal anonymous Strophe connect()
//   floor     the same page with no XMPP at all: when its scripts have run
//
// at each emulated RTT (default 0 and 100 ms): every origin is reached through
// perf/examples/latency_proxy.rs adding RTT/2 each way to every chunk. The demo talks to
// Prosody directly (the CM is next to the web server), and so does the static server
// through the demo's /http-bind pass-through.
//
//   scripts/prosody.sh start && eval "$(scripts/prosody.sh env)"
//   cargo build --release --example demo && cargo build --release -p perf --example latency_proxy
//   node browser/latency.mjs [--runs 15] [--rtt 0,100] [--out target/bench-results/session-ready.json]
//
// Each measurement gets a fresh browser context (no cache, no connections, no cookies
// carried over) with the HTTP cache disabled; the methods take turns within each run
// (rotating which goes first), after one warm-up round per RTT that is not counted.
// Prints a table of medians and writes every sample and the summary as JSON.
import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';

import { launchChromium, CHROMIUM } from './chromium.mjs';
import { ROOT, startServer } from './processes.mjs';
import { startStatic } from './bench/static.mjs';

const PAGE_TIMEOUT_MS = 30000;

function parseArgs(argv) {
  const options = {
    runs: 15,
    rtts: [0, 100],
    out: path.join(ROOT, 'target/bench-results/session-ready.json'),
    boshUrl: process.env.BOSH_PREBIND_TEST_BOSH_URL,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [flag, value] = [argv[i], argv[i + 1]];
    if (value === undefined) throw new Error(`${flag} needs a value`);
    if (flag === '--runs') options.runs = Number(value);
    else if (flag === '--rtt') options.rtts = value.split(',').map(Number);
    else if (flag === '--out') options.out = path.resolve(value);
    else if (flag === '--bosh-url') options.boshUrl = value;
    else throw new Error(`unknown flag ${flag}; usage: node browser/latency.mjs [--runs N] [--rtt 0,100] [--out FILE] [--bosh-url URL]`);
  }
  if (!options.boshUrl) throw new Error('no CM: set BOSH_PREBIND_TEST_BOSH_URL (eval "$(scripts/prosody.sh env)") or pass --bosh-url');
  if (!(options.runs >= 1 && options.runs <= 200)) throw new Error('--runs: 1 to 200');
  if (options.rtts.some((rtt) => !(rtt >= 0 && rtt <= 2000) || rtt % 2 !== 0)) throw new Error('--rtt: even milliseconds, 0 to 2000');
  return options;
}

/** target/release/examples/NAME, else target/debug/examples/NAME (the workspace's
 * target dir: the demo is the library's example, latency_proxy the perf crate's). */
function binary(name) {
  const target = process.env.CARGO_TARGET_DIR ? path.resolve(ROOT, process.env.CARGO_TARGET_DIR) : path.join(ROOT, 'target');
  for (const profile of ['release', 'debug']) {
    const file = path.join(target, profile, 'examples', name);
    if (existsSync(file)) return { file, profile };
  }
  const crate = name === 'demo' ? '' : '-p perf ';
  throw new Error(`example ${name} is not built: cargo build --release ${crate}--example ${name}`);
}

const METHODS = {
  injected: { origin: 'demo', path: '/', expect: 'injected' },
  post: { origin: 'demo', path: '/classic.html', expect: 'post' },
  connect: { origin: 'static', path: '/', expect: 'fallback' },
  floor: { origin: 'static', path: '/floor.html', expect: 'floor' },
};

function quantile(values, q) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (sorted.length - 1) * q;
  const lo = Math.floor(at);
  const hi = Math.ceil(at);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (at - lo);
}

/** One page load in a fresh context: the page's own verdict plus what it sent. */
async function measure(browser, url, method) {
  const context = await browser.newContext();
  try {
    const page = await context.newPage();
    const cdp = await context.newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.setCacheDisabled', { cacheDisabled: true });
    const requests = { bosh: 0, prebind: 0, other: 0 };
    page.on('request', (request) => {
      const { pathname } = new URL(request.url());
      if (pathname === '/http-bind') requests.bosh += 1;
      else if (pathname === '/prebind') requests.prebind += 1;
      else requests.other += 1;
    });
    const errors = [];
    page.on('pageerror', (error) => errors.push(String(error)));
    await page.goto(url, { timeout: PAGE_TIMEOUT_MS, waitUntil: 'commit' });
    await page.waitForFunction(() => window.__prebindResult, null, { timeout: PAGE_TIMEOUT_MS, polling: 20 });
    const { result, navigation } = await page.evaluate(() => {
      const [entry] = performance.getEntriesByType('navigation');
      return {
        result: window.__prebindResult,
        navigation: entry && {
          responseStart: entry.responseStart,
          responseEnd: entry.responseEnd,
          domInteractive: entry.domInteractive,
        },
      };
    });
    if (result.error) throw new Error(`${method}: the page failed: ${result.error}`);
    if (result.method !== METHODS[method].expect) throw new Error(`${method}: the page took the ${result.method} path`);
    if (errors.length) throw new Error(`${method}: page errors: ${errors.join('; ')}`);
    return { navToPingMs: result.navToPingMs, pingMs: result.pingMs ?? null, navigation, requests };
  } finally {
    await context.close();
  }
}

async function main() {
  const options = parseArgs(process.argv.slice(2));
  const demoBin = binary('demo');
  const proxyBin = binary('latency_proxy');
  const children = [];
  const statics = [];
  let browser;
  try {
    // Quiet servers: per-request logging would cost the same for every method, but it is noise.
    const start = async (name, command, args) => {
      const { child, url } = await startServer(name, command, args, { env: { RUST_LOG: 'warn' } });
      children.push(child);
      return url;
    };
    const demo = await start('demo', demoBin.file, (port) => [
      '--listen', `127.0.0.1:${port}`, '--bosh-url', options.boshUrl,
    ]);
    const site = await startStatic(demo);
    statics.push(site);
    // One proxy per origin and RTT.
    const origins = {};
    for (const rtt of options.rtts) {
      origins[rtt] = {};
      for (const [name, target] of [['demo', demo], ['static', site.url]]) {
        origins[rtt][name] = await start(`proxy ${name} ${rtt} ms`, proxyBin.file, (port) => [
          '--listen', `127.0.0.1:${port}`, '--target', new URL(target).host, '--delay-ms', String(rtt / 2),
        ]);
      }
    }
    browser = await launchChromium();
    const version = browser.version();
    console.error(`Chromium ${version}; demo and proxy: ${demoBin.profile} builds; CM ${options.boshUrl}; ${options.runs} runs per method and RTT`);

    const names = Object.keys(METHODS);
    const samples = [];
    for (const rtt of options.rtts) {
      for (let run = -1; run < options.runs; run++) {
        // Rotate the order so that no method always follows the same one.
        const shift = ((run % names.length) + names.length) % names.length;
        const order = names.slice(shift).concat(names.slice(0, shift));
        for (const method of order) {
          const { origin, path: pagePath } = METHODS[method];
          const url = `${origins[rtt][origin]}${pagePath}`;
          const sample = await measure(browser, url, method);
          if (run >= 0) samples.push({ rtt_ms: rtt, method, run, ...sample });
        }
      }
      console.error(`  ${rtt} ms RTT done`);
    }

    // Over the floor at one RTT, minus the same at 0 ms RTT: what the RTT itself
    // costs, without the client's own CPU time (Strophe, parsing, Strophe's idle tick)
    // that is there at any RTT.
    const medianOf = (rtt, method) => quantile(samples.filter((s) => s.rtt_ms === rtt && s.method === method).map((s) => s.navToPingMs), 0.5);
    const overFloor = (rtt, method) => medianOf(rtt, method) - medianOf(rtt, 'floor');
    const summary = [];
    for (const rtt of options.rtts) {
      const floor = medianOf(rtt, 'floor');
      for (const method of names) {
        const mine = samples.filter((s) => s.rtt_ms === rtt && s.method === method);
        const values = mine.map((s) => s.navToPingMs);
        const median = quantile(values, 0.5);
        summary.push({
          rtt_ms: rtt,
          method,
          runs: values.length,
          median_ms: median,
          p10_ms: quantile(values, 0.1),
          p90_ms: quantile(values, 0.9),
          over_floor_ms: median - floor,
          over_floor_rtts: rtt > 0 ? (median - floor) / rtt : null,
          // Needs a 0 ms RTT run next to this one.
          rtt_attributable_rtts: rtt > 0 && options.rtts.includes(0) ? (overFloor(rtt, method) - overFloor(0, method)) / rtt : null,
          ping_ms: quantile(mine.map((s) => s.pingMs ?? NaN), 0.5),
          dom_interactive_ms: quantile(mine.map((s) => s.navigation?.domInteractive ?? NaN), 0.5),
          bosh_requests: quantile(mine.map((s) => s.requests.bosh), 0.5),
          prebind_requests: quantile(mine.map((s) => s.requests.prebind), 0.5),
          response_end_ms: quantile(mine.map((s) => s.navigation?.responseEnd ?? NaN), 0.5),
        });
      }
    }

    const expected = { injected: 'floor + 1 RTT', post: 'floor + 2 RTT', connect: 'floor + 5-6 RTT', floor: '' };
    const positive = options.rtts.filter((r) => r > 0);
    const header = [
      'method',
      ...options.rtts.map((rtt) => `${rtt} ms RTT: median (p10-p90)`),
      ...positive.map((rtt) => `over floor at ${rtt} ms, in RTTs`),
      ...(options.rtts.includes(0) ? positive.map((rtt) => `over floor at ${rtt} ms minus over floor at 0 ms, in RTTs`) : []),
      'BOSH requests (+ /prebind)',
      'expected',
    ];
    console.log(`| ${header.join(' | ')} |`);
    console.log(`|${header.map(() => '---').join('|')}|`);
    for (const method of names) {
      const rows = summary.filter((s) => s.method === method);
      const cells = [
        method,
        ...rows.map((s) => `${s.median_ms.toFixed(0)} ms (${s.p10_ms.toFixed(0)}-${s.p90_ms.toFixed(0)})`),
        ...rows.filter((s) => s.rtt_ms > 0).map((s) => (method === 'floor' ? '–' : s.over_floor_rtts.toFixed(2))),
        ...(options.rtts.includes(0) ? rows.filter((s) => s.rtt_ms > 0).map((s) => (method === 'floor' ? '–' : s.rtt_attributable_rtts.toFixed(2))) : []),
        `${rows[0].bosh_requests}${rows[0].prebind_requests ? ` + ${rows[0].prebind_requests}` : ''}`,
        expected[method],
      ];
      console.log(`| ${cells.join(' | ')} |`);
    }

    mkdirSync(path.dirname(options.out), { recursive: true });
    writeFileSync(options.out, `${JSON.stringify({
      what: 'navigation start -> first XEP-0199 ping reply (floor: scripts run), headless Chromium, emulated RTT via perf/examples/latency_proxy.rs',
      chromium: version,
      chromium_path: CHROMIUM,
      builds: demoBin.profile,
      bosh_url: options.boshUrl,
      runs: options.runs,
      rtts_ms: options.rtts,
      date: new Date().toISOString(),
      summary,
      samples,
    }, null, 1)}\n`);
    console.error(`wrote ${path.relative(process.cwd(), options.out)}`);
  } catch (error) {
    for (const child of children) console.error(child.describe());
    throw error;
  } finally {
    await browser?.close();
    await Promise.all(statics.map((site) => site.close()));
    await Promise.all(children.map((child) => child.stop()));
  }
}

await main();
