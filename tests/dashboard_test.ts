/**
 * End to end in a real headless Chromium (scripts/chromium.ts): the dashboard the daemon
 * serves loads with no console error, its connection count follows clients joining and
 * leaving, and a publish from its form reaches a connected raw client; under
 * `--cluster=redis` it lists a node lost with its state until the loss is accepted.
 */

import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { collectErrors, launchBrowser } from "../scripts/chromium.ts";
import { startRedis } from "../scripts/redis.ts";
import { connected, type RawClient } from "./client.ts";
import { type ClusterView, membershipFlags, TestCluster } from "./cluster_redis.ts";
import { eventually, freePortRun, startDaemon, whilePortTaken } from "./harness.ts";

/** Waits until the element `selector` shows exactly `text` (the page updates once a second). */
async function shows(page: Page, selector: string, text: string): Promise<void> {
  const escaped = text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  await page.locator(selector, { hasText: new RegExp(`^${escaped}$`) }).waitFor({
    timeout: 10_000,
  });
}

Deno.test({
  name:
    "dashboard: loads clean, counts connections as clients come and go, publishes from its form",
  // playwright keeps its pipe to the browser in resources the sanitizers would flag.
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const daemon = await startDaemon();
    const browser = await launchBrowser();
    const clients: RawClient[] = [];
    try {
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const errors = collectErrors(page);
      const response = await page.goto(`http://127.0.0.1:${daemon.adminPort}/dashboard`);
      assert.equal(response?.status(), 200);
      const slash = await fetch(`http://127.0.0.1:${daemon.adminPort}/dashboard/`);
      assert.equal(await slash.text(), await response?.text(), "/dashboard/ is the same page");
      const connections = page.locator("#connections");
      await shows(page, "#connections", "0");
      await shows(page, "#ready", "ready");
      assert.equal(await page.locator("#members tbody tr").count(), 1, "one node: this one");

      for (const uid of ["dash1", "dash2", "dash3"]) {
        clients.push(await connected(daemon.clientPort, uid));
      }
      await shows(page, "#connections", "3");
      clients.pop()!.close();
      clients.pop()!.close();
      await shows(page, "#connections", "1");
      assert.equal(await connections.textContent(), "1");

      await page.selectOption("#pub-kind", "to");
      await page.fill("#pub-target", "dash1");
      await page.fill("#pub-from", "ops-desk");
      await page.fill("#pub-body", "hello from the dashboard");
      await page.click("#pub-send");
      const message = await clients[0].next();
      assert.deepEqual(
        { y: message?.y, f: message?.f, t: message?.t, b: message?.b },
        { y: 3, f: "ops-desk", t: "dash1", b: "hello from the dashboard" },
      );
      await shows(page, "#pub-result", "ok: stored and delivered");
      // The charts drew: uPlot made a canvas for each.
      assert.equal(await page.locator("canvas").count(), 4);
      assert.deepEqual(errors, []);
    } finally {
      for (const client of clients) client.close();
      await browser.close();
      assert.equal(await daemon.stop(), 0);
    }
  },
});

Deno.test({
  name:
    "dashboard: behind an admin token, the page asks for it once and sends it as a Bearer header",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const TOKEN = "s3cret-token";
    const daemon = await startDaemon([], { adminToken: TOKEN });
    // Requests the daemon refused with 401 so far (`admin()` sends the token, so not its own).
    const unauthorized = async () =>
      ((await daemon.admin("/stats")).body.result as { request: Record<string, number> })
        .request.Unauthorized ?? 0;
    const browser = await launchBrowser();
    try {
      const page = await browser.newPage();
      const response = await page.goto(`http://127.0.0.1:${daemon.adminPort}/dashboard`);
      assert.equal(response?.status(), 200, "the page itself needs no token");
      await page.locator("#token-form").waitFor({ state: "visible", timeout: 10_000 });
      assert.equal(await page.locator("#connections").textContent(), "–", "no data without it");
      assert.ok(await unauthorized() > 0, "its data requests were refused");
      await page.fill("#token", TOKEN);
      await page.click("#token-form button");
      await shows(page, "#connections", "0");
      await shows(page, "#ready", "ready");
      assert.ok(await page.locator("#token-form").isHidden());
      const refusedBefore = await unauthorized();
      await page.fill("#pub-target", "nobody-online");
      await page.fill("#pub-body", "kept for later");
      await page.click("#pub-send");
      await shows(page, "#pub-result", "ok: stored and delivered");
      assert.equal(await unauthorized(), refusedBefore, "every request after carries the token");
      const stored = (await daemon.admin("/msg?uid=nobody-online")).body.result as string[];
      assert.equal(JSON.parse(stored[0]).b, "kept for later");
    } finally {
      await browser.close();
      assert.equal(await daemon.stop(), 0);
    }
  },
});

Deno.test({
  name: "dashboard: under --cluster=redis, lists a node lost with its state until it is accepted",
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    const redis = await startRedis();
    const nodes = new TestCluster([...membershipFlags("dash", redis.url), "--storage=sqlite"]);
    const browser = await launchBrowser();
    try {
      for (const id of ["n1", "n2"]) {
        await whilePortTaken(() => nodes.start(id, [`--shard_port_base=${freePortRun(2)}`]));
      }
      await nodes.settled(["n1", "n2"]);
      const [n1, n2] = [nodes.nodes.get("n1")!, nodes.nodes.get("n2")!];
      const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
      const errors = collectErrors(page);
      await page.goto(`http://127.0.0.1:${n1.adminPort}/dashboard`);
      await shows(page, "#ready", "ready");
      assert.ok(await page.locator("#lost-panel").isHidden(), "nothing lost yet");
      nodes.nodes.delete("n2");
      await n2.stop("SIGKILL");
      await nodes.settled(["n1"]);
      assert.ok(
        await eventually(async () => {
          const view = (await n1.admin("/cluster")).body.result as ClusterView;
          return view.lost.length === 1;
        }, 10_000),
        "n2 recorded as lost",
      );
      await page.locator("#lost-panel").waitFor({ state: "visible", timeout: 10_000 });
      const cells = await page.locator("#lost tbody tr td").allTextContents();
      assert.equal(cells[0], "n2");
      assert.notEqual(cells[1], "unknown", "since when");
      assert.equal(cells[2], "2 of 4");
      const accepted = await n1.admin("/cluster/lost?node=n2", { method: "DELETE" });
      assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
      await page.locator("#lost-panel").waitFor({ state: "hidden", timeout: 10_000 });
      assert.deepEqual(errors, []);
    } finally {
      await browser.close();
      await nodes.stopAll();
      await redis.stop();
    }
  },
});
