import assert from "node:assert/strict";
import { prng } from "../testing/support.ts";
import { memberText } from "./json_text.ts";

Deno.test("memberText: the member's text as written, whatever its kind", () => {
  const object = '{"a":12345678901234567890,"b":"x\\"}y","c":[1,{"d":"]"}],"e":true,"f":null}';
  assert.equal(memberText(object, "a"), "12345678901234567890");
  assert.equal(memberText(object, "b"), '"x\\"}y"');
  assert.equal(memberText(object, "c"), '[1,{"d":"]"}]');
  assert.equal(memberText(object, "e"), "true");
  assert.equal(memberText(object, "f"), "null");
  assert.equal(memberText(object, "g"), undefined);
  assert.equal(memberText("{}", "a"), undefined);
  assert.equal(memberText(" { } ", "a"), undefined);
});

Deno.test("memberText: nested members of the same name are not top-level members", () => {
  assert.equal(memberText('{"x":{"b":1},"b":2}', "b"), "2");
  assert.equal(memberText('{"x":["b",{"b":1}]}', "b"), undefined);
});

Deno.test("memberText: white space outside strings goes, inside strings it stays", () => {
  assert.equal(memberText('{ "b" :\t[ 1 ,\r\n 2 ] }', "b"), "[1,2]");
  assert.equal(memberText('{"b":" a  b "}', "b"), '" a  b "');
  assert.equal(memberText('{"b" : -1.5e+3 }', "b"), "-1.5e+3");
});

/** A random JSON text with random white space; numbers written in ways JSON.parse rounds. */
function randomJson(random: () => number, depth: number): string {
  const space = () => [" ", "", "\n", "\t", "\r\n "][Math.floor(random() * 5)];
  const pick = Math.floor(random() * (depth > 3 ? 4 : 6));
  switch (pick) {
    case 0:
      return ["12345678901234567890", "9007199254740993", "1e400", "-0", "0.10", "2E-7"][
        Math.floor(random() * 6)
      ];
    case 1:
      return JSON.stringify(
        String.fromCharCode(...Array.from({ length: 6 }, () => 0x20 + Math.floor(random() * 95))),
      );
    case 2:
      return ["true", "false", "null"][Math.floor(random() * 3)];
    case 3:
      return '"\\u00e9\\n\\"\\\\"';
    case 4: {
      const items = Array.from(
        { length: Math.floor(random() * 4) },
        () => space() + randomJson(random, depth + 1) + space(),
      );
      return `[${items.join(",")}]`;
    }
    default: {
      const members = Array.from(
        { length: Math.floor(random() * 4) },
        (_, i) =>
          `${space()}"${["b", "k", "a"][i % 3]}"${space()}:${space()}${
            randomJson(random, depth + 1)
          }${space()}`,
      );
      return `{${members.join(",")}}`;
    }
  }
}

Deno.test("memberText: 2,000 random values keep their meaning and their number texts", () => {
  const random = prng(7);
  for (let n = 0; n < 2000; n++) {
    const value = randomJson(random, 0);
    const object = `{"y":3, "b" :${value} ,"t":"u"}`;
    const text = memberText(object, "b")!;
    assert.deepEqual(JSON.parse(text), JSON.parse(value), `case ${n}: ${value}`);
    // Every number literal is kept character for character.
    const numbers = (s: string) => s.replace(/"(?:[^"\\]|\\.)*"/g, "").match(/-?\d[\d.eE+-]*/g);
    assert.deepEqual(numbers(text), numbers(value), `case ${n}: ${value}`);
    // No white space outside strings.
    assert.ok(!/\s/.test(text.replace(/"(?:[^"\\]|\\.)*"/g, "")), `case ${n}: ${text}`);
  }
});
