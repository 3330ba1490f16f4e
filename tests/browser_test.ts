/**
 * The demo page (`/demo` on the front door) in a real headless Chromium (Debian's, driven by
 * playwright-core) against the real daemon: a `/pub` reaches it over each transport, forced
 * one at a time; a channel message; a resume after the server drops the connection, with no
 * gap and no duplicate by `s`; a message sent from the page to another user.
 *
 * `IPUSH_DEMO_SCREENSHOT=docs/demo.png` also saves the page after a pushed message there.
 */

import assert from "node:assert/strict";
import type { Browser, Page } from "playwright-core";
import { collectErrors, launchBrowser } from "../scripts/chromium.ts";
import { connected, settle } from "./client.ts";
import { type Daemon, eventually, publish, startDaemon } from "./harness.ts";

const TRANSPORTS = { ws: "WebSocket", sse: "server-sent events", poll: "long-poll" } as const;

/** The demo page, connected as `uid` over `transport` (`auto`: the first that works). */
async function demo(
  browser: Browser,
  daemon: Daemon,
  uid: string,
  transport: keyof typeof TRANSPORTS | "auto",
): Promise<{ page: Page; errors: string[] }> {
  const page = await browser.newPage({ viewport: { width: 1100, height: 720 } });
  const errors = collectErrors(page);
  await page.goto(`http://127.0.0.1:${daemon.clientPort}/demo?uid=${uid}&transport=${transport}`);
  await page.waitForSelector('#status[data-state="open"]', { timeout: 15_000 });
  assert.equal(await page.textContent("#state"), "open");
  return { page, errors };
}

/** The `s` of the messages the page shows, oldest first. */
async function shown(page: Page): Promise<number[]> {
  const seqs = await page.$$eval("#messages li", (items) => items.map((li) => li.dataset.seq));
  return seqs.reverse().filter((s) => s !== "").map(Number);
}

async function bodies(page: Page): Promise<string[]> {
  const texts = await page.$$eval("#messages .body", (cells) => cells.map((c) => c.textContent));
  return texts.reverse() as string[];
}

/** The local index of the shard that owns `uid`. */
async function ownerIndex(daemon: Daemon, uid: string): Promise<number> {
  const { body } = await daemon.admin(`/shard?uid=${uid}`);
  return daemon.shardPorts.indexOf(Number(String(body.result).split(":")[1]));
}

Deno.test("browser: the demo page in Chromium against the daemon", async (t) => {
  const daemon = await startDaemon(["--debug_api=true"]);
  let browser: Browser | undefined;
  try {
    browser = await launchBrowser();
    for (const [transport, name] of Object.entries(TRANSPORTS)) {
      await t.step(`a /pub reaches the page over ${name} (forced)`, async () => {
        const uid = `page_${transport}`;
        const { page, errors } = await demo(browser!, daemon, uid, transport as "ws");
        assert.equal(await page.textContent("#transport"), name);
        await publish(daemon, `to=${uid}`, `hello over ${transport}`);
        assert.ok(
          await eventually(async () => (await shown(page)).length > 0, 10_000),
          `nothing shown; the page says ${await page.textContent("#status")}: ` +
            `${await page.textContent("#detail")}; errors: ${errors}`,
        );
        assert.deepEqual(await bodies(page), [`hello over ${transport}`]);
        assert.deepEqual(await shown(page), [1]);
        assert.match((await page.textContent("#messages .from"))!, /from op/);
        assert.deepEqual(errors, []);
        await page.close();
      });
    }

    await t.step("a channel message, subscribed from the page", async () => {
      const { page, errors } = await demo(browser!, daemon, "page_room", "auto");
      await page.fill("#channel", "lobby");
      await page.click("#subscribe");
      await page.waitForSelector("text=subscribed: lobby");
      // On a WebSocket a subscribe is on its way when it resolves: publish until it is stored.
      assert.ok(
        await eventually(async () => {
          await publish(daemon, "channel=lobby", "standup in 5");
          return (await page.$$("#messages .kind.channel")).length > 0;
        }, 10_000),
        "the channel message arrived",
      );
      assert.equal(await page.textContent("#messages .kind.channel"), "channel lobby");
      assert.deepEqual(errors, []);
      await page.close();
    });

    for (const transport of Object.keys(TRANSPORTS) as (keyof typeof TRANSPORTS)[]) {
      await t.step(
        `${transport}: after the server drops it, the page resumes with no gap and no repeat`,
        async () => {
          const uid = `page_drop_${transport}`;
          const { page, errors } = await demo(browser!, daemon, uid, transport);
          for (let i = 1; i <= 3; i++) await publish(daemon, `to=${uid}`, `before ${i}`);
          assert.ok(await eventually(async () => (await shown(page)).length === 3, 10_000));
          // The owning shard crashes: its sockets (and the page's connection) are gone.
          await daemon.admin(`/debug/crash?shard=${await ownerIndex(daemon, uid)}`, {
            method: "POST",
          });
          // The crash comes just after its answer: a publish sent before it could be stored by
          // the old worker and answered 503 as it dies, and its retry would store it again.
          await page.waitForSelector('#status:not([data-state="open"])', { timeout: 5000 });
          for (let i = 1; i <= 3; i++) {
            assert.ok(
              await eventually(
                async () => (await publish(daemon, `to=${uid}`, `after ${i}`)).status === 200,
                20_000,
              ),
              "the shard came back",
            );
          }
          assert.ok(
            await eventually(async () => (await shown(page)).length >= 6, 20_000),
            `shown: ${await shown(page)}`,
          );
          assert.deepEqual(await shown(page), [1, 2, 3, 4, 5, 6]);
          assert.deepEqual(
            await bodies(page),
            [1, 2, 3].map((i) => `before ${i}`).concat(
              [1, 2, 3].map((i) => `after ${i}`),
            ),
          );
          await page.waitForSelector('#status[data-state="open"]');
          // While the shard was down Chromium logs each refused attempt; nothing else may go wrong.
          const refused =
            /^console\.error: (WebSocket connection to .* failed|Failed to load resource)/;
          assert.deepEqual(errors.filter((e) => !refused.test(e)), []);
          await page.close();
        },
      );
    }

    await t.step("the page sends to another user", async () => {
      const bob = await connected(daemon.clientPort, "page_bob");
      const { page, errors } = await demo(browser!, daemon, "page_alice", "auto");
      await page.selectOption("#target-kind", "user");
      await page.fill("#target", "page_bob");
      await page.fill("#body", "lunch at noon?");
      await page.click("#send");
      await page.waitForSelector("text=sent to page_bob");
      assert.deepEqual(await bob.next(), {
        y: 3,
        f: "page_alice",
        t: "page_bob",
        b: "lunch at noon?",
        s: 1,
      });
      assert.deepEqual(await settle(bob), []);
      bob.close();
      assert.deepEqual(errors, []);

      const screenshot = Deno.env.get("IPUSH_DEMO_SCREENSHOT");
      if (screenshot) {
        await page.fill("#channel", "lobby");
        await page.click("#subscribe");
        await page.waitForSelector("text=subscribed: lobby");
        await publish(daemon, "to=page_alice", "Your build #42 passed");
        await page.waitForSelector("text=Your build #42 passed");
        await publish(daemon, "channel=lobby", "standup in 5");
        await page.waitForSelector(".kind.channel");
        await publish(daemon, "to=page_alice", "Carol commented on your task");
        await page.waitForSelector("text=Carol commented on your task");
        await page.evaluate("scrollTo(0, 0)");
        await page.screenshot({ path: screenshot, fullPage: true });
      }
      await page.close();
    });
  } finally {
    await browser?.close();
    await daemon.stop();
  }
});
