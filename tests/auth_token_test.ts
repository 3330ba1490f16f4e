/**
 * End to end: `--auth=token` (PROTOCOL.md §8) — tokens minted in the test with `jose`, HS256
 * with the daemon's secret and RS256 with the public key in a PEM file the test writes; the
 * `channels` claim decides a client's subscribes and channel messages; `deno task token`
 * mints one the daemon takes.
 */

import assert from "node:assert/strict";
import { exportSPKI, generateKeyPair, type JWTPayload, SignJWT, UnsecuredJWT } from "jose";
import { RawClient, settle } from "./client.ts";
import { publish, startDaemon } from "./harness.ts";

const SECRET = "the daemon's HS256 secret, 32 bytes or more";
const ROOT = new URL("../", import.meta.url);

const hs256 = (claims: JWTPayload, secret = SECRET) =>
  new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode(secret));
const inAnHour = () => Math.floor(Date.now() / 1000) + 3600;

Deno.test("auth token: signed tokens admit their sub, with the channels they claim", async (t) => {
  const { publicKey, privateKey } = await generateKeyPair("RS256", { extractable: true });
  const keyFile = await Deno.makeTempFile({ suffix: ".pem" });
  await Deno.writeTextFile(keyFile, await exportSPKI(publicKey));
  const daemon = await startDaemon([
    "--auth=token",
    `--auth_token_secret=${SECRET}`,
    `--auth_token_key_file=${keyFile}`,
  ]);
  const open: RawClient[] = [];
  /** Connects with `token` as the password, following the 303. */
  const connect = async (uid: string, token: string) => {
    const { client, answer, redirected } = await RawClient.connect(daemon.clientPort, uid, token);
    assert.ok(redirected);
    if (answer.status === 200) open.push(client);
    else {
      assert.ok(await client.closedWithin(2000), "closed after the refusal");
      client.close();
    }
    return answer;
  };
  try {
    await t.step("a valid HS256 token connects", async () => {
      const answer = await connect("alice", await hs256({ sub: "alice", exp: inAnHour() }));
      assert.equal(answer.status, 200);
    });

    const now = Math.floor(Date.now() / 1000);
    const refused: [string, () => Promise<string>][] = [
      ["expired", () => hs256({ sub: "alice", exp: now - 120 })],
      [
        "signed with another secret",
        () => hs256({ sub: "alice", exp: inAnHour() }, "not the daemon's secret, but as long"),
      ],
      ["for another uid (sub is not the uid)", () => hs256({ sub: "mallory", exp: inAnHour() })],
      ["without exp", () => hs256({ sub: "alice" })],
      ["alg none", () =>
        Promise.resolve(
          new UnsecuredJWT({ channels: ["*"] }).setSubject("alice").setExpirationTime("1h")
            .encode(),
        )],
      ["not a token at all", () => Promise.resolve("pwd001")],
    ];
    for (const [what, token] of refused) {
      await t.step(`400 invalid token: ${what}`, async () => {
        const answer = await connect("alice", await token());
        assert.equal(answer.status, 400);
        assert.equal(answer.rest, '{"error":"invalid token"}');
      });
    }

    await t.step(
      "channels claim team-*: team-a allowed, other forbidden, the stream stays",
      async () => {
        const token = await hs256({ sub: "bob", exp: inAnHour(), channels: ["team-*"] });
        assert.equal((await connect("bob", token)).status, 200);
        const bob = open[open.length - 1];
        await bob.send({ y: 1, c: "team-a" });
        await bob.send({ y: 1, c: "other" });
        assert.deepEqual(await bob.next(), { error: "forbidden" });
        await bob.send({ y: 4, c: "other", b: "sneaky" });
        assert.deepEqual(await bob.next(), { error: "forbidden" });
        await bob.send({ y: 4, c: "team-a", b: "hi team" });
        assert.deepEqual(await bob.next(), {
          y: 4,
          f: "bob",
          t: "bob",
          c: "team-a",
          b: "hi team",
          s: 1,
        });
        assert.deepEqual(await settle(bob), []);
        const members = (await daemon.admin("/msg?uid=bob")).body.result as string[];
        assert.equal(members.length, 1, "only the team-a message was stored for bob");
        // The admin API's /sub needs no permission.
        assert.deepEqual((await daemon.admin("/sub?uid=bob&cid=other")).body, { result: "ok" });
        assert.deepEqual((await publish(daemon, "channel=other", "announcement")).body, {
          result: "ok",
        });
        assert.equal((await bob.next())?.b, "announcement");
      },
    );

    await t.step("an RS256 token, verified with the key file", async () => {
      const token = await new SignJWT({ channels: ["news"] }).setProtectedHeader({ alg: "RS256" })
        .setSubject("carol").setExpirationTime("1h").sign(privateKey);
      assert.equal((await connect("carol", token)).status, 200);
      const carol = open[open.length - 1];
      await carol.send({ y: 1, c: "news" });
      await carol.send({ y: 1, c: "team-a" });
      assert.deepEqual(await carol.next(), { error: "forbidden" });
      assert.deepEqual(await settle(carol), []);
      // Another key pair's RS256 token is refused.
      const other = await generateKeyPair("RS256");
      const forged = await new SignJWT({}).setProtectedHeader({ alg: "RS256" }).setSubject("carol")
        .setExpirationTime("1h").sign(other.privateKey);
      assert.equal((await connect("carol", forged)).status, 400);
    });

    await t.step("deno task token mints one the daemon takes", async () => {
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-read",
          "scripts/token.ts",
          "--uid=dave",
          "--channels=team-*,news",
          "--ttl=60",
          `--auth_token_secret=${SECRET}`,
        ],
        cwd: ROOT,
      }).output();
      assert.equal(output.code, 0, new TextDecoder().decode(output.stderr));
      const token = new TextDecoder().decode(output.stdout).trim();
      assert.equal((await connect("dave", token)).status, 200);
      const dave = open[open.length - 1];
      await dave.send({ y: 1, c: "news" });
      await dave.send({ y: 1, c: "sports" });
      assert.deepEqual(await dave.next(), { error: "forbidden" });
      assert.deepEqual(await settle(dave), []);
    });

    await t.step("/stats counts the refusals", async () => {
      const stats = (await daemon.admin("/stats")).body.result as Record<string, number>;
      assert.equal(stats.auth_fail_number, refused.length + 1);
      assert.equal(stats.forbidden_number, 4);
    });
  } finally {
    for (const client of open) client.close();
    assert.equal(await daemon.stop(), 0);
    await Deno.remove(keyFile);
  }
});
