// The floor of session-ready time: the demo page with no XMPP at all. Loaded where
// demo.js is (after Strophe.js), it records when the page's scripts have run, in
// the same shape as demo.js's result (browser/latency.mjs).
window.__prebindResult = { method: 'floor', navToPingMs: performance.now() };
