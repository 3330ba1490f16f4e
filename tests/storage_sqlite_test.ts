/**
 * End to end: the embedded durable store (the default) survives `kill -9`, and a daemon does
 * not start on a store file that is empty or damaged.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { rejection } from "../src/testing/support.ts";
import { killTest } from "./durability.ts";
import { publish, startDaemon } from "./harness.ts";

Deno.test("sqlite: every /pub answered ok survives kill -9 with its s; s keeps rising", async () => {
  await killTest(["--storage=sqlite"]);
});

Deno.test("sqlite: an empty or damaged store file stops the start with a reason; s is never reused", async (t) => {
  const first = await startDaemon(["--storage=sqlite"]);
  for (let i = 0; i < 3; i++) await publish(first, "to=keeper", `m${i}`);
  assert.equal(await first.stop(), 0);
  // The file of keeper's shard, with everything in it, so that damage to it is damage to data.
  const file = [0, 1].map((k) => `${first.dir}/data/shard-${k}.sqlite`).find((path) => {
    const db = new DatabaseSync(path);
    try {
      db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
      return db.prepare("SELECT 1 FROM users WHERE uid = 'keeper'").get() !== undefined;
    } finally {
      db.close();
    }
  })!;
  const bytes = await Deno.readFile(file);
  const startRefused = async (contents: Uint8Array) => {
    await Deno.writeFile(file, contents);
    try {
      return String(await rejection(startDaemon(["--storage=sqlite"], { dir: first.dir })));
    } finally {
      await Deno.writeFile(file, bytes);
    }
  };

  await t.step("a damaged page", async () => {
    const damaged = bytes.slice();
    // Past the first page: the tables' B-tree pages. Garbage there is what a bad sector leaves.
    for (let i = 4096; i < damaged.length; i++) damaged[i] = (i * 7) & 0xff;
    const refusal = await startRefused(damaged);
    assert.match(refusal, /shard-\d\.sqlite is damaged \(quick_check: .+\): refusing to start/);
    assert.match(refusal, /Restore it from a backup/);
  });

  await t.step("a zero-length file", async () => {
    const refusal = await startRefused(new Uint8Array(0));
    assert.match(refusal, /shard-\d\.sqlite is empty \(0 bytes\), not an ipush store/);
    assert.match(refusal, /move it away to start with an empty store/);
    assert.ok(!await exists(first.pidFile), "a refused start leaves no pid file");
  });

  await t.step("the file restored, s goes on from where it was", async () => {
    const again = await startDaemon(["--storage=sqlite"], { dir: first.dir });
    try {
      const listed = (await again.admin("/msg?uid=keeper")).body.result as string[];
      assert.deepEqual(listed.map((text) => JSON.parse(text).s), [1, 2, 3]);
      await publish(again, "to=keeper", "m3");
      const after = (await again.admin("/msg?uid=keeper")).body.result as string[];
      assert.equal(JSON.parse(after.at(-1)!).s, 4);
    } finally {
      assert.equal(await again.stop(), 0);
    }
  });
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("sqlite: another --workers on the same data moves every uid to its new shard; s goes on", async () => {
  const uids = Array.from({ length: 12 }, (_, i) => `mover${i}`);
  const first = await startDaemon(["--storage=sqlite"]);
  for (const uid of uids) {
    for (let i = 1; i <= 2; i++) await publish(first, `to=${uid}`, `m${i}`);
  }
  assert.equal(await first.stop(), 0);
  for (const workers of [3, 1]) {
    const again = await startDaemon(["--storage=sqlite", `--workers=${workers}`], {
      dir: first.dir,
    });
    try {
      for (const uid of uids) {
        const listed = (await again.admin(`/msg?uid=${uid}`)).body.result as string[];
        assert.deepEqual(listed.map((text) => JSON.parse(text).s), [1, 2], `${uid}, ${workers}`);
      }
      const names = [...Deno.readDirSync(`${first.dir}/data`)].map((e) => e.name)
        .filter((name) => name.endsWith(".sqlite")).sort();
      assert.deepEqual(names, Array.from({ length: workers }, (_, k) => `shard-${k}.sqlite`));
    } finally {
      assert.equal(await again.stop(), 0);
    }
  }
  const last = await startDaemon(["--storage=sqlite"], { dir: first.dir });
  try {
    const receipt = (await publish(last, `to=${uids[0]}&receipt=1`, "m3")).body.result;
    assert.equal((receipt as { s: number }).s, 3);
  } finally {
    assert.equal(await last.stop(), 0);
  }
});
