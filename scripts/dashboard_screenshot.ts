/**
 * Takes a screenshot of a running daemon's dashboard in headless Chromium, for the docs
 * (`docs/dashboard.png`): loads the page, lets it chart for a while, and saves the whole page.
 *
 * ```sh
 * deno run -A scripts/dashboard_screenshot.ts http://127.0.0.1:9001/dashboard docs/dashboard.png [seconds] [uid]
 * ```
 *
 * With a uid, the presence lookup shows that user before the shot.
 *
 * @module
 */

import { launchBrowser } from "./chromium.ts";

if (import.meta.main) {
  const [url, out, seconds = "60", uid] = Deno.args;
  if (!url || !out) {
    console.error("usage: deno run -A scripts/dashboard_screenshot.ts URL OUT.png [seconds] [uid]");
    Deno.exit(2);
  }
  const browser = await launchBrowser();
  try {
    const page = await browser.newPage({ viewport: { width: 1440, height: 1000 } });
    await page.goto(url);
    await page.waitForTimeout(Number(seconds) * 1000);
    if (uid) {
      await page.fill("#presence-name", uid);
      await page.click("#presence-form button");
      await page.locator("#presence-result", { hasText: uid }).waitFor();
    }
    await page.screenshot({ path: out, fullPage: true });
    console.log(`${out}: ${url} after ${seconds} s`);
  } finally {
    await browser.close();
  }
}
