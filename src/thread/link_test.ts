import assert from "node:assert/strict";
import { ServiceError } from "../core/errors.ts";
import { Link, type Port } from "./link.ts";
import { rejection } from "../testing/support.ts";

const nextTurn = () => new Promise<void>((resolve) => setTimeout(resolve, 0));

/** A port that counts (and records) what goes through `postMessage`. */
class CountingPort implements Port {
  posts: unknown[] = [];
  constructor(readonly inner: MessagePort) {}
  postMessage(message: unknown): void {
    this.posts.push(message);
    this.inner.postMessage(message);
  }
  get onmessage(): ((event: MessageEvent) => void) | null {
    return this.inner.onmessage as ((event: MessageEvent) => void) | null;
  }
  set onmessage(handler: ((event: MessageEvent) => void) | null) {
    this.inner.onmessage = handler;
  }
}

interface Pair {
  main: Link;
  worker: Link;
  mainPort: CountingPort;
  workerPort: CountingPort;
  mainNotes: unknown[];
  workerNotes: unknown[];
  close(): void;
}

type Handler = (body: unknown) => Promise<unknown>;

/** Two linked ends over a `MessageChannel`; `close()` releases the ports. */
function pair(
  mainHandler: Handler = () => Promise.reject(new Error("main handles nothing")),
  workerHandler: Handler = (body) => Promise.resolve({ echo: body }),
): Pair {
  const channel = new MessageChannel();
  const mainPort = new CountingPort(channel.port1);
  const workerPort = new CountingPort(channel.port2);
  const mainNotes: unknown[] = [];
  const workerNotes: unknown[] = [];
  const main = new Link(mainPort, mainHandler, (note) => mainNotes.push(note));
  const worker = new Link(workerPort, workerHandler, (note) => workerNotes.push(note));
  return {
    main,
    worker,
    mainPort,
    workerPort,
    mainNotes,
    workerNotes,
    close() {
      channel.port1.close();
      channel.port2.close();
    },
  };
}

Deno.test("Link: a request is answered with the other end's value", async () => {
  const link = pair();
  try {
    assert.deepEqual(await link.main.request({ op: "ping", n: 1 }), { echo: { op: "ping", n: 1 } });
    assert.deepEqual(await link.main.request("text"), { echo: "text" });
  } finally {
    link.close();
  }
});

Deno.test("Link: both ends can request", async () => {
  const link = pair((body) => Promise.resolve(`main got ${body}`));
  try {
    assert.equal(await link.worker.request("hello"), "main got hello");
    assert.deepEqual(await link.main.request("hi"), { echo: "hi" });
  } finally {
    link.close();
  }
});

Deno.test("Link: concurrent requests each get their own answer", async () => {
  const link = pair(undefined, async (body) => {
    const n = body as number;
    // Answer out of order: later requests first.
    await new Promise((resolve) => setTimeout(resolve, (20 - n) * 2));
    return n * n;
  });
  try {
    const answers = await Promise.all(Array.from({ length: 20 }, (_, n) => link.main.request(n)));
    assert.deepEqual(answers, Array.from({ length: 20 }, (_, n) => n * n));
  } finally {
    link.close();
  }
});

Deno.test("Link: a ServiceError's message and status cross the link", async () => {
  const link = pair(undefined, () => Promise.reject(new ServiceError("no such uid", 404)));
  try {
    const error = await rejection(link.main.request("x"));
    assert.ok(error instanceof ServiceError);
    assert.equal(error.message, "no such uid");
    assert.equal(error.status, 404);
    assert.equal(error.name, "ServiceError");
  } finally {
    link.close();
  }
});

Deno.test("Link: other errors become a ServiceError with status 500", async () => {
  const link = pair(undefined, (body) => {
    if (body === "type") return Promise.reject(new TypeError("bad type"));
    return Promise.reject(new Error("boom"));
  });
  try {
    const plain = await rejection(link.main.request("plain"));
    assert.ok(plain instanceof ServiceError);
    assert.equal(plain.message, "boom");
    assert.equal(plain.status, 500);
    const typed = await rejection(link.main.request("type"));
    assert.ok(typed instanceof ServiceError);
    assert.equal(typed.message, "bad type");
    assert.equal(typed.status, 500);
  } finally {
    link.close();
  }
});

Deno.test("Link: an async handler that throws is answered with 500", async () => {
  // deno-lint-ignore require-await
  const link = pair(undefined, async () => {
    throw new RangeError("out of range");
  });
  try {
    const error = await rejection(link.main.request(1));
    assert.ok(error instanceof ServiceError);
    assert.equal(error.status, 500);
    assert.equal(error.message, "out of range");
  } finally {
    link.close();
  }
});

Deno.test("Link: notes arrive in order and get no reply", async () => {
  const link = pair();
  try {
    link.main.notify({ kind: "stats", n: 1 });
    link.main.notify("second");
    link.worker.notify(["to", "main"]);
    await nextTurn();
    await nextTurn();
    assert.deepEqual(link.workerNotes, [{ kind: "stats", n: 1 }, "second"]);
    assert.deepEqual(link.mainNotes, [["to", "main"]]);
    // One post each way; nothing answered the notes.
    assert.equal(link.mainPort.posts.length, 1);
    assert.equal(link.workerPort.posts.length, 1);
  } finally {
    link.close();
  }
});

Deno.test("Link: N requests and notes in one turn are one postMessage", async () => {
  const link = pair();
  try {
    const requests = Array.from({ length: 50 }, (_, i) => link.main.request(i));
    link.main.notify("note");
    assert.equal(link.mainPort.posts.length, 0, "nothing is posted synchronously");
    const answers = await Promise.all(requests);
    assert.equal(link.mainPort.posts.length, 1);
    assert.equal((link.mainPort.posts[0] as unknown[]).length, 51);
    assert.deepEqual(answers, Array.from({ length: 50 }, (_, i) => ({ echo: i })));
    // The worker's 50 answers were made in one turn too: one post back.
    assert.equal(link.workerPort.posts.length, 1);
    assert.equal((link.workerPort.posts[0] as unknown[]).length, 50);
    assert.deepEqual(link.workerNotes, ["note"]);
  } finally {
    link.close();
  }
});

Deno.test("Link: requests in different turns are different posts", async () => {
  const link = pair();
  try {
    await link.main.request(1);
    await link.main.request(2);
    assert.equal(link.mainPort.posts.length, 2);
  } finally {
    link.close();
  }
});

Deno.test("Link: close() rejects pending requests and every later one", async () => {
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => release = resolve);
  const link = pair(undefined, async (body) => {
    await gate;
    return body;
  });
  try {
    const pending = [link.main.request(1), link.main.request(2)];
    await nextTurn();
    const reason = new Error("worker exited");
    link.main.close(reason);
    for (const request of pending) assert.equal(await rejection(request), reason);
    const postsBefore = link.mainPort.posts.length;
    assert.equal(await rejection(link.main.request(3)), reason);
    link.main.notify("ignored");
    await nextTurn();
    assert.equal(link.mainPort.posts.length, postsBefore, "a closed link posts nothing");
    assert.deepEqual(link.workerNotes, []);
    // The late answers that still arrive are dropped without harm.
    release();
    await nextTurn();
    await nextTurn();
  } finally {
    link.close();
  }
});

Deno.test("Link: a request made in the same turn as close() is rejected, not posted", async () => {
  const link = pair();
  try {
    const request = link.main.request("late");
    const reason = new Error("closing");
    link.main.close(reason);
    assert.equal(await rejection(request), reason);
    await nextTurn();
    assert.equal(link.mainPort.posts.length, 0);
  } finally {
    link.close();
  }
});

Deno.test("ServiceError carries its status", () => {
  const error = new ServiceError("draining", 503);
  assert.ok(error instanceof Error);
  assert.equal(error.status, 503);
  assert.equal(error.message, "draining");
});

Deno.test("Link: a handler that throws synchronously still answers, and the batch goes on", async () => {
  const { port1, port2 } = new MessageChannel();
  const server = new Link(port2, (body) => {
    if (body === "boom") throw new Error("sync boom");
    return Promise.resolve(`echo ${body}`);
  }, () => {});
  const client = new Link(port1, () => Promise.resolve(), () => {});
  try {
    const [boom, after] = await Promise.allSettled([client.request("boom"), client.request("x")]);
    assert.equal(boom.status, "rejected");
    assert.equal((boom as PromiseRejectedResult).reason.message, "sync boom");
    assert.deepEqual(after, { status: "fulfilled", value: "echo x" });
  } finally {
    client.close(new Error("done"));
    server.close(new Error("done"));
    port1.close();
    port2.close();
  }
});

Deno.test("Link: a closed link ignores notes that arrive later", async () => {
  const { port1, port2 } = new MessageChannel();
  const heard: unknown[] = [];
  const receiver = new Link(port2, () => Promise.resolve(), (note) => heard.push(note));
  const sender = new Link(port1, () => Promise.resolve(), () => {});
  try {
    sender.notify("before");
    await new Promise((resolve) => setTimeout(resolve, 20));
    receiver.close(new Error("replaced"));
    sender.notify("after");
    await new Promise((resolve) => setTimeout(resolve, 20));
    assert.deepEqual(heard, ["before"]);
  } finally {
    sender.close(new Error("done"));
    port1.close();
    port2.close();
  }
});
