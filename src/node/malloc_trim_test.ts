import assert from "node:assert/strict";
import { openMallocTrim } from "./malloc_trim.ts";

Deno.test("openMallocTrim gives pages freed inside the heap back to the kernel", async () => {
  // A child with `gc()`: 3,000 buffers of 64 KB, each followed by a small one that stays, so
  // that the freed ones lie inside the heap, where glibc keeps them resident.
  const script = `
    const { openMallocTrim } = await import(${
    JSON.stringify(import.meta.resolve("./malloc_trim.ts"))
  });
    const rss = () => Number(/VmRSS:\\s+(\\d+)/.exec(Deno.readTextFileSync("/proc/self/status"))[1]);
    let freed = [];
    const kept = [];
    for (let i = 0; i < 3000; i++) {
      freed.push(new Uint8Array(65536).fill(1));
      kept.push(new Uint8Array(1024).fill(1));
    }
    freed = null;
    gc();
    await new Promise((resolve) => setTimeout(resolve, 200));
    const before = rss();
    const released = openMallocTrim()();
    console.log(JSON.stringify({ released, trimmedKb: before - rss(), kept: kept.length }));
  `;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["eval", "--v8-flags=--expose-gc", script],
  }).output();
  assert.equal(code, 0, new TextDecoder().decode(stderr));
  const result = JSON.parse(new TextDecoder().decode(stdout));
  assert.equal(result.released, true);
  assert.ok(result.trimmedKb > 100_000, `only ${result.trimmedKb} KB went back`);
});

Deno.test("openMallocTrim binds on this glibc system", () => {
  const trim = openMallocTrim();
  assert.ok(trim, "glibc's malloc_trim is there");
  assert.equal(typeof trim(), "boolean");
});
