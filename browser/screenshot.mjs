// Opens a demo page in headless Chromium, waits for its verdict and saves a screenshot:
//
//   node browser/screenshot.mjs [URL] [OUT.png]     (defaults: http://127.0.0.1:3000/, /tmp/demo.png)
//
// Prints window.__prebindResult and the page's BOSH log; exits 1 if the page did not connect.
import { launchChromium } from './chromium.mjs';

const [url = 'http://127.0.0.1:3000/', out = '/tmp/demo.png'] = process.argv.slice(2);
const browser = await launchChromium();
let connected = false;
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
  await page.goto(url, { timeout: 20000 });
  await page.waitForFunction(() => window.__prebindResult, null, { timeout: 20000 });
  const result = await page.evaluate(() => window.__prebindResult);
  console.log(`status: ${await page.locator('#status').textContent()}`);
  console.log(`result: ${JSON.stringify(result)}`);
  console.log(`log:\n${await page.locator('#log').textContent()}`);
  await page.screenshot({ path: out, fullPage: true });
  console.log(`screenshot: ${out}`);
  connected = !result.error;
} finally {
  await browser.close();
}
process.exit(connected ? 0 : 1);
