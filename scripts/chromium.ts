/**
 * A real headless Chromium for browser tests: Debian's `chromium` (installed with apt-get when
 * `/usr/bin/chromium` is missing), driven by npm's `playwright-core`. Playwright's own browser
 * downloads do not work on a machine without internet, so the browser is always the system one.
 *
 * ```ts
 * const browser = await launchBrowser();
 * const page = await browser.newPage();
 * const errors = collectErrors(page);
 * await page.goto(`http://127.0.0.1:${port}/`);
 * // ... assert on page.textContent(...), then on errors
 * await browser.close(); // also deletes the browser's temp profile
 * ```
 *
 * Chromium does not outlive the process that launched it: playwright talks to it over a pipe
 * (`--remote-debugging-pipe`), and Chromium quits when that pipe closes, which the kernel does
 * also when this process dies of SIGKILL. Playwright's two temp directories (the profile and
 * `playwright-artifacts-*`) go only with `browser.close()`, though: under Deno its exit hook
 * does not run on `Deno.exit`, an uncaught error or a kill, so close the browser in `finally`.
 *
 * CLI, to check that the browser installs, launches and renders on this machine:
 *
 * ```sh
 * deno run -A scripts/chromium.ts check   # prints the Chromium version; exit code 0 when it works
 * ```
 *
 * @module
 */

import { type Browser, chromium, type Page } from "playwright-core";
import { aptInstall, exists } from "./local_server.ts";

/** Where Debian's `chromium` package puts its launcher. */
export const CHROMIUM_PATH = "/usr/bin/chromium";

/**
 * The flags Chromium needs here. `--no-sandbox`: tests run as root, where the sandbox refuses
 * to start. The rest keep Chromium from calling home (updates, sync, field trials, QUIC): on a
 * closed network those connections are refused, and they only add noise and delay. Playwright
 * passes most of them by default too; they are spelled out so that they hold whatever it does.
 */
export const CHROMIUM_ARGS: readonly string[] = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

const LAUNCH_TIMEOUT_MS = 30_000;

/** Installs Debian's `chromium` unless `/usr/bin/chromium` exists. */
export async function ensureChromium(): Promise<void> {
  if (await exists(CHROMIUM_PATH)) return;
  await aptInstall("chromium");
}

/**
 * Launches a fresh headless Chromium (installing it first if needed). Playwright gives it a new
 * empty profile in a temp directory (`--user-data-dir`) and deletes that on `browser.close()`.
 */
export async function launchBrowser(): Promise<Browser> {
  await ensureChromium();
  return await chromium.launch({
    executablePath: CHROMIUM_PATH,
    headless: true,
    args: [...CHROMIUM_ARGS],
    timeout: LAUNCH_TIMEOUT_MS,
  });
}

/**
 * What goes wrong in `page` from now on, as lines that fill in as it happens: `console.error`
 * messages (which include failed resource loads) and uncaught exceptions.
 */
export function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (message) => {
    if (message.type() === "error") errors.push(`console.error: ${message.text()}`);
  });
  page.on("pageerror", (error) => errors.push(`uncaught: ${error.message}`));
  return errors;
}

// ---------------------------------------------------------------------------------------------
// CLI: `check` serves a page on loopback, loads it and reads back what its script wrote, so
// that a pass means install, launch, network, JavaScript, DOM, screenshots and error reports
// all work.

const SCREENSHOT = "/tmp/chromium-check.png";

/** A page whose script writes the text to read back, then reports one error of each kind. */
const CHECK_PAGE = `<!doctype html>
<title>chromium check</title>
<p id="out">script did not run</p>
<script>
  document.getElementById("out").textContent = "rendered by " + ["Java", "Script"].join("");
  console.error("check: console.error");
  setTimeout(() => { throw new Error("check: uncaught"); });
</script>
`;

async function check(): Promise<void> {
  let started = performance.now();
  const installed = await exists(CHROMIUM_PATH);
  await ensureChromium();
  if (!installed) console.log(`installed chromium in ${seconds(started)}`);

  await using server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    () => new Response(CHECK_PAGE, { headers: { "content-type": "text/html; charset=utf-8" } }),
  );
  started = performance.now();
  const browser = await launchBrowser();
  try {
    console.log(`launched Chromium ${browser.version()} in ${seconds(started)}`);
    const page = await browser.newPage();
    const errors = collectErrors(page);
    started = performance.now();
    await page.goto(`http://127.0.0.1:${server.addr.port}/`);
    const text = await page.textContent("#out");
    if (text !== "rendered by JavaScript") throw new Error(`page text: ${JSON.stringify(text)}`);
    console.log(`loaded the page in ${seconds(started)}: ${JSON.stringify(text)}`);

    await page.screenshot({ path: SCREENSHOT });
    console.log(`screenshot: ${SCREENSHOT}`);

    // The uncaught error comes from a timer; wait for it rather than race it.
    const deadline = Date.now() + 5_000;
    while (errors.length < 2 && Date.now() < deadline) await page.waitForTimeout(20);
    const expected = ["console.error: check: console.error", "uncaught: check: uncaught"];
    if (JSON.stringify(errors) !== JSON.stringify(expected)) {
      throw new Error(`collected errors: ${JSON.stringify(errors)}`);
    }
    console.log(`collected errors: ${errors.join("; ")}`);
  } finally {
    started = performance.now();
    await browser.close();
    console.log(`closed in ${seconds(started)}`);
  }
}

function seconds(since: number): string {
  return `${((performance.now() - since) / 1000).toFixed(2)} s`;
}

if (import.meta.main) {
  if (Deno.args[0] === "check") {
    await check();
  } else {
    console.error("usage: deno run -A scripts/chromium.ts check");
    Deno.exit(2);
  }
}
