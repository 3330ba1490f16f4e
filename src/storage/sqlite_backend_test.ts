import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { ShardMap } from "../core/shard_map.ts";
import { LEGACY_FILE, prepareShardFiles, shardFile } from "./sqlite_backend.ts";
import { SqliteStore } from "./sqlite.ts";

const UIDS = Array.from({ length: 60 }, (_, i) => `user${i}`);
const ids = (n: number) => Array.from({ length: n }, (_, k) => `node1/${k}`);

/** Writes what every uid has to `path`: 3 messages, a device at 2, a channel. */
async function fill(path: string): Promise<void> {
  const store = new SqliteStore(path);
  try {
    await store.append(
      UIDS.flatMap((uid) =>
        [1, 2, 3].map((seq) => ({
          uid,
          seq,
          type: 3 as const,
          from: "op",
          body: `"${seq}"`,
          expiresAt: 0,
        }))
      ),
    );
    await store.updateDevices(UIDS.map((uid) => ({ uid, device: "phone", lastAck: 2, seenAt: 7 })));
    for (const uid of UIDS) await store.subscribe(`room-${uid}`, uid);
  } finally {
    await store.close();
  }
}

/** Which file of `n` holds each uid's rows, and whether each holds all of them. */
async function homes(dir: string, n: number): Promise<Map<string, number>> {
  const found = new Map<string, number>();
  for (let k = 0; k < n; k++) {
    const store = new SqliteStore(shardFile(dir, k));
    try {
      for (const uid of UIDS) {
        const { lastSeq, devices } = await store.userState(uid);
        if (lastSeq === 0) continue;
        assert.ok(!found.has(uid), `${uid} in two files`);
        found.set(uid, k);
        assert.deepEqual((await store.readAfter(uid, 0, 10, 0)).map((m) => m.seq), [1, 2, 3]);
        assert.deepEqual(devices.get("phone"), { lastAck: 2, seenAt: 7 });
        assert.deepEqual(await store.channels(uid), [`room-${uid}`]);
      }
    } finally {
      await store.close();
    }
  }
  return found;
}

function expectedHomes(n: number): Map<string, number> {
  const map = new ShardMap(ids(n).map((id) => ({ id, host: "", port: 0 })));
  return new Map(UIDS.map((uid) => [uid, map.indexOf(uid)]));
}

async function withDir(test: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "ipush-homing-test-" });
  try {
    await test(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("prepareShardFiles: a fresh directory gets a homed file per shard", async () => {
  await withDir((dir) => {
    assert.deepEqual(prepareShardFiles(dir, ids(2)).moved, 0);
    const names = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(names, ["shard-0.sqlite", "shard-1.sqlite"]);
    assert.deepEqual(prepareShardFiles(dir, ids(2)), { sources: 0, moved: 0 }, "nothing to do");
  });
});

Deno.test("prepareShardFiles: the single file of before is moved into the shards' files, whole", async () => {
  await withDir(async (dir) => {
    await fill(`${dir}/${LEGACY_FILE}`);
    assert.equal(prepareShardFiles(dir, ids(2)).moved, UIDS.length);
    assert.deepEqual(await homes(dir, 2), expectedHomes(2));
    assert.ok(![...Deno.readDirSync(dir)].some((e) => e.name.startsWith("ipush.sqlite")));
  });
});

Deno.test("prepareShardFiles: another worker count re-homes every uid, and back", async () => {
  await withDir(async (dir) => {
    await fill(shardFile(dir, 0)); // a file never homed: shard 0 has every uid
    prepareShardFiles(dir, ids(2));
    assert.deepEqual(await homes(dir, 2), expectedHomes(2));
    prepareShardFiles(dir, ids(3));
    assert.deepEqual(await homes(dir, 3), expectedHomes(3));
    prepareShardFiles(dir, ids(1));
    assert.deepEqual(await homes(dir, 1), expectedHomes(1));
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["shard-0.sqlite"]);
  });
});

Deno.test("prepareShardFiles: a damaged file stops it before anything moves", async () => {
  await withDir(async (dir) => {
    await fill(`${dir}/${LEGACY_FILE}`);
    await Deno.writeFile(shardFile(dir, 1), new Uint8Array(0));
    assert.throws(() => prepareShardFiles(dir, ids(2)), /shard-1\.sqlite is empty/);
    const legacy = new DatabaseSync(`${dir}/${LEGACY_FILE}`);
    try {
      const { n } = legacy.prepare("SELECT count(*) AS n FROM users").get() as { n: number };
      assert.equal(n, UIDS.length);
    } finally {
      legacy.close();
    }
  });
});

/** The bus mark of each of the `n` shard files. */
async function busMarks(dir: string, n: number): Promise<(string | null)[]> {
  const marks = [];
  for (let k = 0; k < n; k++) {
    const store = new SqliteStore(shardFile(dir, k));
    try {
      marks.push(await store.busMark());
    } finally {
      await store.close();
    }
  }
  return marks;
}

Deno.test("prepareShardFiles: a file keeps its bus mark while homed, and drops it when uids move", async () => {
  await withDir(async (dir) => {
    prepareShardFiles(dir, ids(2));
    for (const k of [0, 1]) {
      const store = new SqliteStore(shardFile(dir, k));
      await store.append([], `1700000000000-${k}`);
      await store.close();
    }
    prepareShardFiles(dir, ids(2));
    assert.deepEqual(await busMarks(dir, 2), ["1700000000000-0", "1700000000000-1"]);
    // A file's mark vouched for its own uids' copies: with uids moved in, it vouches for none.
    await fill(shardFile(dir, 0));
    prepareShardFiles(dir, ids(3));
    assert.deepEqual(await busMarks(dir, 3), [null, null, null]);
  });
});
