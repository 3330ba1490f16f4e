import assert from "node:assert/strict";
import { createLog, type LogFormat } from "./log.ts";

function lines(format: LogFormat) {
  const written: string[] = [];
  const log = createLog({
    component: "shard-1",
    node: "n2",
    threshold: "info",
    format,
    write: (line) => written.push(line),
  });
  return { log, written };
}

Deno.test("log: json is one object a line with time, level, component, node, message and fields", () => {
  const { log, written } = lines("json");
  log("warn", 'Redis at redis://h:1 is "unreachable"\nstill', { url: "redis://h:1", down_sec: 30 });
  log("debug", "dropped below the threshold");
  assert.equal(written.length, 1);
  assert.ok(!written[0].includes("\n"), "one line, whatever the message holds");
  const line = JSON.parse(written[0]);
  assert.deepEqual(Object.keys(line).sort(), [
    "component",
    "down_sec",
    "level",
    "message",
    "node",
    "time",
    "url",
  ]);
  assert.equal(line.level, "warn");
  assert.equal(line.component, "shard-1");
  assert.equal(line.node, "n2");
  assert.equal(line.message, 'Redis at redis://h:1 is "unreachable"\nstill');
  assert.equal(line.down_sec, 30);
  assert.ok(Math.abs(Date.parse(line.time) - Date.now()) < 5_000);
});

Deno.test("log: a field cannot overwrite a standard key; text is the words alone", () => {
  const json = lines("json");
  json.log("error", "boom", { level: "debug", message: "forged" });
  assert.equal(JSON.parse(json.written[0]).level, "error");
  assert.equal(JSON.parse(json.written[0]).message, "boom");
  const text = lines("text");
  text.log("info", "listening", { port: 9010 });
  assert.match(text.written[0], /^\d{4}-\d\d-\d\dT[\d:.]+Z INFO shard-1 n2: listening$/);
});
