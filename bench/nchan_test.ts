/**
 * Tests of the load generator's nchan target: its flags (what nchan cannot be measured with is
 * refused, not ignored), its stream adapter, and a short unicast run against a real nchan
 * started by `scripts/nchan.ts` (installed with apt-get when absent).
 *
 *     deno test --allow-all bench/nchan_test.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { parseOptions } from "./load/flags.ts";
import type { LoadOptions } from "./load/flags.ts";
import { NchanPublisher, nchanStream } from "./load/target.ts";
import { startNchan } from "../scripts/nchan.ts";

const LOAD = new URL("./load.ts", import.meta.url).pathname;

Deno.test("flags: --target=nchan takes its own defaults and a loopback --url", () => {
  const o = parseOptions([
    "unicast",
    "--target=nchan",
    "--url=http://127.0.0.1:18080",
  ]) as LoadOptions;
  assert.equal(o.target, "nchan");
  assert.deepEqual([o.host, o.clientPorts, o.adminHost, o.adminPort], [
    "127.0.0.1",
    [18080],
    "127.0.0.1",
    18080,
  ]);
  assert.deepEqual([o.ack, o.heartbeatSec, o.pidFile], ["none", 0, ""]);
  const started = parseOptions(["fanout", "--target=nchan"]) as LoadOptions;
  assert.equal(started.url, null, "no --url: the run starts its own nchan");
  assert.equal((parseOptions(["unicast"]) as LoadOptions).target, "ipush");
});

Deno.test("flags: what nchan cannot be measured with is refused with a reason", () => {
  const refused: [string[], RegExp][] = [
    [["chat"], /cannot send/],
    [["unicast", "--transport=ws"], /--transport=tcp/],
    [["unicast", "--batch=10"], /one message a request/],
    [["unicast", "--ack=each"], /--ack=none/],
    [["unicast", "--heartbeat_sec=30"], /--heartbeat_sec=0/],
    [["unicast", "--client_port=9000"], /--url instead of --client_port/],
    [["fanout", "--channel=a-b"], /word characters/],
    [["unicast", "--url=http://10.0.0.1:80"], /only loopback/],
    [["unicast", "--url=nchan"], /not a URL/],
  ];
  for (const [args, message] of refused) {
    assert.throws(() => parseOptions([...args, "--target=nchan"]), message, args.join(" "));
  }
  assert.throws(() => parseOptions(["unicast", "--target=mosquitto"]), /--target must be/);
  assert.throws(() => parseOptions(["unicast", "--url=http://127.0.0.1:1"]), /--target=nchan/);
});

Deno.test("nchan stream: a subscriber of its uid or of the channel; a chunk is the message", () => {
  const own = nchanStream(null);
  assert.equal(own.path("load_7", "pwd7"), "/sub/load_7");
  assert.match(
    own.request("/sub/load_7"),
    /^GET \/sub\/load_7 HTTP\/1\.1\r\n.*TE: chunked\r\n\r\n$/s,
  );
  assert.deepEqual(own.frame("1764000000000.123 42"), { y: 3, b: "1764000000000.123 42" });
  const member = nchanStream("room");
  assert.equal(member.path("load_7", "pwd7"), "/sub/room");
  assert.deepEqual(member.frame("x"), { y: 4, b: "x" });
  assert.equal(own.duplex, false, "no acks or heartbeats on nchan's stream");
});

Deno.test("nchan publisher: a publish to no subscriber is a 202, accepted; an ipush answer is not", async () => {
  const nchan = await startNchan();
  const publisher = new NchanPublisher("127.0.0.1", nchan.port);
  try {
    const none = await publisher.pubTo("nobody", "load", "x");
    assert.equal(none.status, 202, none.body);
    assert.ok(publisher.accepted(none));
    assert.equal(
      publisher.accepted({ status: 200, body: '{"result":"ok"}', retryAfter: null }),
      false,
    );
    await assert.rejects(publisher.pubBatch(), /one message a request/);
  } finally {
    publisher.close();
    await nchan.stop();
  }
});

Deno.test("load --target=nchan: a short unicast run, every publish delivered once", async () => {
  // No --url: the run starts its nchan (scripts/nchan.ts) and stops it after.
  const dir = await Deno.makeTempDir({ prefix: "ipush-load-nchan-" });
  try {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-all",
        LOAD,
        "unicast",
        "--target=nchan",
        "--connections=20",
        "--source_addrs=0",
        "--rate=300",
        "--duration_sec=1",
        "--drain_sec=3",
        `--out=${dir}/result.json`,
      ],
      stdout: "null",
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    const { metrics, latency, options, server } = JSON.parse(
      await Deno.readTextFile(`${dir}/result.json`),
    );
    assert.match(options.url, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(metrics.connections_ok, 20);
    const published = metrics.published_ok as number;
    assert.ok(published >= 200, `published ${published}`);
    assert.equal(metrics.publish_failed, 0);
    assert.equal(metrics.delivered_total, published, "each publish reached its subscriber");
    assert.equal(metrics.missing_after_drain, 0);
    assert.equal(metrics.unmatched, 0, "none twice, none unasked for");
    assert.equal(latency.count, published, "a latency sample a delivery");
    assert.ok((metrics.server_rss_kb_max_load as number) > 1000, "the worker's RSS is read");
    assert.ok((metrics.server_cpu_us_per_delivered as number) > 0, "and its CPU time");
    // The nchan it started is gone with it.
    assert.throws(() => Deno.statSync(`/proc/${server.pid}`));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
