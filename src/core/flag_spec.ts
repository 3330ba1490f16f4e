/**
 * Flags, gflags style: `--name=value`, `--flagfile=PATH` (one flag a line, `#` starts a
 * comment), the command line overriding the file. A flag is declared once, with its type,
 * default and help, by whichever module it belongs to (the daemon's core flags in
 * `config/flags.ts`, a store backend's beside the backend); the settings' type is derived
 * from the declarations. Tokenising is `node:util`'s `parseArgs`; this module adds the
 * flagfile, the types, the defaults and `--help`.
 *
 * @module
 */

import { parseArgs } from "node:util";

type Kind =
  | { type: "int"; min: number; max: number }
  | { type: "decimal"; min: number; max: number }
  | { type: "string" }
  | { type: "bool" }
  | { type: "enum"; values: readonly string[] };

/** One flag: how its text is read, its default, and what `--help` says. `T` is its value. */
export interface FlagSpec<T> {
  kind: Kind;
  default: string | (() => string);
  help: string;
  /** Never set: carries the value type for {@linkcode FlagValues}. */
  readonly value?: T;
}

/** Flags by name. */
// deno-lint-ignore no-explicit-any -- any value type: each flag says its own
export type FlagSpecs = Record<string, FlagSpec<any>>;

/** The settings a set of flags gives, one field per flag. */
export type FlagValues<S extends FlagSpecs> = {
  [K in keyof S]: S[K] extends FlagSpec<infer T> ? T : never;
};

/** An integer flag from `min` to `max`. */
export function int(
  min: number,
  max: number,
  fallback: string | (() => string),
  help: string,
): FlagSpec<number> {
  return { kind: { type: "int", min, max }, default: fallback, help };
}

/** A number from `min` to `max` that may have a fraction (`0.5`). */
export function decimal(
  min: number,
  max: number,
  fallback: string,
  help: string,
): FlagSpec<number> {
  return { kind: { type: "decimal", min, max }, default: fallback, help };
}

/** A port (0: picked by the system). */
export function port(fallback: string, help: string): FlagSpec<number> {
  return int(0, 65535, fallback, help);
}

/** A positive 32-bit integer. */
export function positive(fallback: string, help: string): FlagSpec<number> {
  return int(1, 2 ** 31 - 1, fallback, help);
}

/** A text flag. */
export function text(fallback: string, help: string): FlagSpec<string> {
  return { kind: { type: "string" }, default: fallback, help };
}

/** `true` or `false`. */
export function bool(fallback: "true" | "false", help: string): FlagSpec<boolean> {
  return { kind: { type: "bool" }, default: fallback, help };
}

/** One of `values`. */
export function oneOf<const V extends readonly string[]>(
  values: V,
  fallback: V[number],
  help: string,
): FlagSpec<V[number]> {
  return { kind: { type: "enum", values }, default: fallback, help };
}

/** A flag problem; the message names the flag. */
export class FlagError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "FlagError";
  }
}

/** The result of parsing: settings to run with, or a request for help. */
export type Parsed<C> = { help: true } | { help: false; config: C };

/**
 * Parses `args` against `specs` (flagfiles expanded in place, later flags winning).
 * `readFile` is injected so tests need no files.
 */
export function parseFlagsWith<S extends FlagSpecs>(
  specs: S,
  args: readonly string[],
  readFile: (path: string) => string = Deno.readTextFileSync,
): Parsed<FlagValues<S>> {
  // Files first, then the command line: a flag given on the command line overrides the
  // flagfile wherever it stands (inside a file, later lines win, nested files in place).
  const fromFiles: string[] = [];
  const fromCommandLine: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const path = flagfilePath(args, i);
    if (path === null) fromCommandLine.push(args[i]);
    else {
      if (args[i] === "--flagfile") i++;
      fromFiles.push(...expandFlagfiles([`--flagfile=${path}`], readFile, 0));
    }
  }
  const tokens = [...fromFiles, ...fromCommandLine];
  const options: Record<string, { type: "string" | "boolean" }> = Object.fromEntries(
    Object.keys(specs).map((name) => [name, { type: "string" as const }]),
  );
  options.help = { type: "boolean" };
  let values: Record<string, string | boolean | undefined>;
  try {
    values = parseArgs({ args: tokens, options, strict: true, allowPositionals: false }).values;
  } catch (error) {
    throw new FlagError(describeParseError(error));
  }
  if ("help" in values) return { help: true };
  const config: Record<string, string | number | boolean> = {};
  for (const [name, spec] of Object.entries(specs)) {
    const given = values[name] as string | undefined;
    config[name] = convert(name, given ?? defaultOf(spec), spec.kind);
  }
  return { help: false, config: config as FlagValues<S> };
}

function defaultOf(spec: FlagSpec<unknown>): string {
  return typeof spec.default === "function" ? spec.default() : spec.default;
}

function expandFlagfiles(
  args: readonly string[],
  readFile: (path: string) => string,
  depth: number,
): string[] {
  if (depth > 8) throw new FlagError("--flagfile nests too deeply");
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const path = flagfilePath(args, i);
    if (path === null) {
      out.push(args[i]);
      continue;
    }
    if (args[i] === "--flagfile") i++;
    let text: string;
    try {
      text = readFile(path);
    } catch (error) {
      throw new FlagError(`--flagfile=${path}: ${(error as Error).message}`);
    }
    out.push(...expandFlagfiles(flagLines(text), readFile, depth + 1));
  }
  return out;
}

/** The path if `args[i]` is `--flagfile=PATH` or `--flagfile PATH`; null otherwise. */
function flagfilePath(args: readonly string[], i: number): string | null {
  if (args[i].startsWith("--flagfile=")) return args[i].slice("--flagfile=".length);
  if (args[i] !== "--flagfile") return null;
  if (i + 1 >= args.length) throw new FlagError("flag --flagfile needs a value (--name=value)");
  return args[i + 1];
}

/**
 * The flags of a flagfile's text: one a line; `#` starts a comment at the start of a line
 * or after white space, so a `#` inside a value (a password in a URL) is kept.
 */
function flagLines(text: string): string[] {
  return text.split("\n").map((line) => line.replace(/(^|\s)#.*$/, "").trim()).filter(Boolean);
}

function describeParseError(error: unknown): string {
  const message = (error as Error).message;
  const unknown = /Unknown option '([^']+)'/.exec(message);
  if (unknown) return `unknown flag ${unknown[1]}`;
  const missing = /Option '(--[^ ']+)[^']*' argument missing/.exec(message);
  if (missing) return `flag ${missing[1]} needs a value (--name=value)`;
  const unexpected = /Unexpected argument '([^']+)'/.exec(message);
  if (unexpected) return `unexpected argument ${unexpected[1]}`;
  return message;
}

function convert(name: string, raw: string, kind: Kind): string | number | boolean {
  switch (kind.type) {
    case "int": {
      const value = /^-?\d+$/.test(raw) ? Number(raw) : NaN;
      if (!Number.isSafeInteger(value) || value < kind.min || value > kind.max) {
        throw new FlagError(
          `bad value for --${name}: '${raw}' (an integer from ${kind.min} to ${kind.max})`,
        );
      }
      return value;
    }
    case "decimal": {
      const value = /^\d+(\.\d+)?$/.test(raw) ? Number(raw) : NaN;
      if (!(value >= kind.min && value <= kind.max)) {
        throw new FlagError(
          `bad value for --${name}: '${raw}' (a number from ${kind.min} to ${kind.max})`,
        );
      }
      return value;
    }
    case "enum":
      if (!kind.values.includes(raw)) {
        throw new FlagError(`bad value for --${name}: '${raw}' (one of ${kind.values.join(", ")})`);
      }
      return raw;
    case "bool":
      if (raw !== "true" && raw !== "false") {
        throw new FlagError(`bad value for --${name}: '${raw}' (true or false)`);
      }
      return raw === "true";
    case "string":
      return raw;
  }
}

/** The `--help` text: every flag with its default and meaning. */
export function helpFor(specs: FlagSpecs, usage: string): string {
  const rows = Object.entries(specs).map(([name, spec]) =>
    `  --${name}=${JSON.stringify(defaultOf(spec))}\n      ${spec.help}`
  );
  return [
    usage,
    "",
    "Flags (default shown; the command line overrides a flagfile):",
    "  --flagfile=PATH\n      read flags from PATH, one --name=value a line, # comments",
    ...rows,
    "",
  ].join("\n");
}
