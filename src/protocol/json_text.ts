/**
 * The JSON text of one member of a JSON object, as the client wrote it. A payload is relayed
 * as given, never through `JSON.parse` and `JSON.stringify`: that round trip silently turns
 * `12345678901234567890` into `12345678901234567000`, `1e400` into `null` and
 * `{"a":1,"a":2}` into `{"a":2}` (64-bit ids are everywhere in the apps ipush serves).
 *
 * The scan trusts its input to be valid JSON (the caller has had `JSON.parse` accept it), so
 * it only has to tell strings from structure. White space outside strings is dropped: it
 * carries no meaning, and without it a relayed value has no raw line break, so a server frame
 * stays one line (`curl -N`, SSE `data:` lines).
 *
 * @module
 */

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/**
 * The text of the last top-level member called `name` of `object` (JSON.parse keeps the last
 * of duplicate names, and so does this), or undefined when there is none. `object` must be a
 * JSON object text that `JSON.parse` accepted.
 */
export function memberText(object: string, name: string): string | undefined {
  let found: string | undefined;
  let i = skipSpace(object, 0) + 1; // past "{"
  for (;;) {
    i = skipSpace(object, i);
    if (object.charCodeAt(i) === 0x7d) return found; // "}": an empty object
    const keyEnd = stringEnd(object, i);
    const key = object.slice(i, keyEnd);
    i = skipSpace(object, skipSpace(object, keyEnd) + 1); // past ":"
    const valueEnd = valueEndAt(object, i);
    if (key === `"${name}"` || (key.includes("\\") && JSON.parse(key) === name)) {
      found = compact(object, i, valueEnd);
    }
    i = skipSpace(object, valueEnd);
    if (object.charCodeAt(i) === 0x7d) return found; // "}"
    i++; // ","
  }
}

/** The index just past the value that starts at `i`. */
function valueEndAt(text: string, i: number): number {
  const first = text.charCodeAt(i);
  if (first === QUOTE) return stringEnd(text, i);
  if (first !== 0x7b && first !== 0x5b) {
    // A number or a literal: it runs to the next delimiter.
    while (i < text.length && !isDelimiter(text.charCodeAt(i))) i++;
    return i;
  }
  let depth = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = stringEnd(text, i);
      continue;
    }
    if (c === 0x7b || c === 0x5b) depth++;
    else if ((c === 0x7d || c === 0x5d) && --depth === 0) return i + 1;
    i++;
  }
  return i;
}

/** The index just past the string whose opening quote is at `i`. */
function stringEnd(text: string, i: number): number {
  for (i++; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === BACKSLASH) i++;
    else if (c === QUOTE) return i + 1;
  }
  return i;
}

/** `text[start, end)` without the white space outside its strings. */
function compact(text: string, start: number, end: number): string {
  let out = "";
  let from = start;
  for (let i = start; i < end;) {
    const c = text.charCodeAt(i);
    if (c === QUOTE) {
      i = stringEnd(text, i);
    } else if (isSpace(c)) {
      out += text.slice(from, i);
      while (i < end && isSpace(text.charCodeAt(i))) i++;
      from = i;
    } else i++;
  }
  return from === start ? text.slice(start, end) : out + text.slice(from, end);
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && isSpace(text.charCodeAt(i))) i++;
  return i;
}

/** JSON's four white space characters. */
function isSpace(c: number): boolean {
  return c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09;
}

/** What ends a number or literal inside a container: `,` `}` `]` or white space. */
function isDelimiter(c: number): boolean {
  return c === 0x2c || c === 0x7d || c === 0x5d || isSpace(c);
}
