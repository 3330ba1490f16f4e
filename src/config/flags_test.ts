import assert from "node:assert/strict";
import { FlagError } from "../core/flag_spec.ts";
import { type Config, helpText, parseFlags } from "./flags.ts";

/** Keys `Config` had when these tests were written; flags may be added, none removed. */
const KNOWN_KEYS: readonly (keyof Config)[] = [
  "client_port",
  "admin_port",
  "admin_host",
  "host",
  "advertise_host",
  "workers",
  "shard_port_base",
  "pid_file",
  "storage",
  "data_dir",
  "heartbeat_timeout_sec",
  "max_frame_bytes",
  "max_head_bytes",
  "handshake_timeout_sec",
  "max_output_bytes",
  "storage_queue_limit",
  "msg_limit",
  "auth",
  "users_file",
  "log_level",
];

const noFiles = (path: string): string => {
  throw new Deno.errors.NotFound(`no such file: ${path}`);
};

/** A `readFile` over an in-memory set of files. */
function files(contents: Record<string, string>): (path: string) => string {
  return (path) => {
    if (!(path in contents)) throw new Deno.errors.NotFound(`No such file or directory: ${path}`);
    return contents[path];
  };
}

function config(args: readonly string[], readFile = noFiles): Config {
  const parsed = parseFlags(args, readFile);
  assert.equal(parsed.help, false, "expected a config, got help");
  return (parsed as { help: false; config: Config }).config;
}

function assertFlagError(
  args: readonly string[],
  pattern: RegExp,
  readFile: (path: string) => string = noFiles,
): void {
  assert.throws(
    () => parseFlags(args, readFile),
    (error: unknown) => {
      assert.ok(error instanceof FlagError, `${args.join(" ")}: ${error}`);
      assert.match(error.message, pattern);
      return true;
    },
  );
}

Deno.test("parseFlags: defaults", () => {
  const defaults = config([]);
  for (const key of KNOWN_KEYS) assert.ok(key in defaults, `no default for ${key}`);
  const known = Object.fromEntries(KNOWN_KEYS.map((key) => [key, defaults[key]]));
  const { workers, ...rest } = known;
  assert.deepEqual(rest, {
    client_port: 9000,
    admin_port: 9001,
    admin_host: "127.0.0.1",
    host: "0.0.0.0",
    advertise_host: "",
    shard_port_base: 9010,
    pid_file: "ipush_server.pid",
    storage: "sqlite",
    data_dir: "data",
    heartbeat_timeout_sec: 90,
    max_frame_bytes: 65536,
    max_head_bytes: 8192,
    handshake_timeout_sec: 10,
    max_output_bytes: 1048576,
    storage_queue_limit: 100000,
    msg_limit: 1000,
    auth: "none",
    users_file: "",
    log_level: "info",
  });
  assert.equal(workers, navigator.hardwareConcurrency || 1);
});

Deno.test("parseFlags: --name=value for each kind", () => {
  const c = config([
    "--client_port=19000",
    "--admin_host=0.0.0.0",
    "--storage=sqlite",
    "--workers=3",
    "--advertise_host=push.example.com",
    "--users_file=/etc/ipush/users",
    "--auth=file",
    "--log_level=debug",
  ]);
  assert.equal(c.client_port, 19000);
  assert.equal(c.admin_host, "0.0.0.0");
  assert.equal(c.storage, "sqlite");
  assert.equal(c.workers, 3);
  assert.equal(c.advertise_host, "push.example.com");
  assert.equal(c.users_file, "/etc/ipush/users");
  assert.equal(c.auth, "file");
  assert.equal(c.log_level, "debug");
  // Untouched flags keep their defaults.
  assert.equal(c.admin_port, 9001);
});

Deno.test("parseFlags: values with `=` and empty values", () => {
  assert.equal(config(["--data_dir=a=b"]).data_dir, "a=b");
  assert.equal(config(["--advertise_host="]).advertise_host, "");
});

Deno.test("parseFlags: port range ends", () => {
  assert.equal(config(["--client_port=0"]).client_port, 0);
  assert.equal(config(["--client_port=65535"]).client_port, 65535);
  assert.equal(config(["--max_frame_bytes=2147483647"]).max_frame_bytes, 2 ** 31 - 1);
});

Deno.test("parseFlags: the later of two flags wins", () => {
  assert.equal(config(["--client_port=1", "--client_port=2"]).client_port, 2);
});

Deno.test("parseFlags: flagfile with comments and blank lines", () => {
  const readFile = files({
    "conf/default.conf": [
      "# ipush settings",
      "",
      "--client_port=9100",
      "   --admin_port=9101   ",
      "--storage=sqlite # the durable store",
      "\t",
      "#--workers=99",
      "--data_dir=/var/lib/ipush\r",
      "",
    ].join("\n"),
  });
  const c = config(["--flagfile=conf/default.conf"], readFile);
  assert.equal(c.client_port, 9100);
  assert.equal(c.admin_port, 9101);
  assert.equal(c.storage, "sqlite");
  assert.equal(c.data_dir, "/var/lib/ipush"); // CRLF files work too
  assert.equal(c.workers, navigator.hardwareConcurrency || 1); // commented out
});

Deno.test("parseFlags: a flag on the command line after --flagfile wins", () => {
  const readFile = files({ "a.conf": "--client_port=9100\n--admin_port=9101\n" });
  const c = config(["--flagfile=a.conf", "--client_port=7000"], readFile);
  assert.equal(c.client_port, 7000);
  assert.equal(c.admin_port, 9101);
});

Deno.test("parseFlags: a flag on the command line before --flagfile still overrides it", () => {
  // PROTOCOL.md §5: flags on the command line override the file, wherever they stand.
  const readFile = files({ "a.conf": "--client_port=9100\n" });
  assert.equal(config(["--client_port=7000", "--flagfile=a.conf"], readFile).client_port, 7000);
});

Deno.test("parseFlags: --flagfile PATH (space form) reads the file", () => {
  const readFile = files({ "a.conf": "--client_port=9100\n" });
  assert.equal(config(["--flagfile", "a.conf"], readFile).client_port, 9100);
});

Deno.test("parseFlags: # starts a comment only at a line's start or after white space", () => {
  const readFile = files({
    "a.conf": "# a comment\n--redis_url=redis://:pa#ss@h:1 # trailing comment\n",
  });
  assert.equal(config(["--flagfile=a.conf"], readFile).redis_url, "redis://:pa#ss@h:1");
});

Deno.test("parseFlags: nested flagfiles are expanded in place", () => {
  const readFile = files({
    "outer.conf": "--client_port=1\n--flagfile=inner.conf\n--admin_port=3\n",
    "inner.conf": "--admin_port=2\n--storage=sqlite\n",
  });
  const c = config(["--flagfile=outer.conf"], readFile);
  assert.equal(c.client_port, 1);
  assert.equal(c.admin_port, 3);
  assert.equal(c.storage, "sqlite");
});

Deno.test("parseFlags: a flagfile that includes itself fails, not loops", () => {
  assertFlagError(
    ["--flagfile=self.conf"],
    /nests too deeply/,
    files({
      "self.conf": "--flagfile=self.conf\n",
    }),
  );
});

Deno.test("parseFlags: flagfiles nest eight deep, not nine", () => {
  const chain = (depth: number) =>
    files(Object.fromEntries(
      Array.from({ length: depth }, (_, i) => [
        `f${i + 1}.conf`,
        i + 1 < depth ? `--flagfile=f${i + 2}.conf\n` : "--msg_limit=8\n",
      ]),
    ));
  assert.equal(config(["--flagfile=f1.conf"], chain(8)).msg_limit, 8);
  assertFlagError(["--flagfile=f1.conf"], /nests too deeply/, chain(9));
});

Deno.test("parseFlags: a missing flagfile is a FlagError naming it", () => {
  assertFlagError(["--flagfile=conf/missing.conf"], /--flagfile=conf\/missing\.conf/);
  assertFlagError(["--flagfile=conf/missing.conf"], /No such file|no such file/i, files({}));
});

Deno.test("parseFlags: the real readFile is the default", () => {
  const path = Deno.makeTempFileSync({ suffix: ".conf" });
  try {
    Deno.writeTextFileSync(path, "--msg_limit=5\n");
    const parsed = parseFlags([`--flagfile=${path}`]);
    assert.equal(parsed.help, false);
    assert.equal((parsed as { config: Config }).config.msg_limit, 5);
  } finally {
    Deno.removeSync(path);
  }
  assert.throws(() => parseFlags([`--flagfile=${path}`]), FlagError);
});

Deno.test("parseFlags: --help asks for help", () => {
  assert.deepEqual(parseFlags(["--help"], noFiles), { help: true });
  assert.deepEqual(parseFlags(["--client_port=1", "--help"], noFiles), { help: true });
  // Help wins over values that would not convert, and over flags after it.
  assert.deepEqual(parseFlags(["--help", "--client_port=x"], noFiles), { help: true });
  assert.deepEqual(parseFlags(["--storage=redis", "--help"], noFiles), { help: true });
  // Also from a flagfile.
  assert.deepEqual(parseFlags(["--flagfile=a.conf"], files({ "a.conf": "--help\n" })), {
    help: true,
  });
});

Deno.test("parseFlags: an unknown flag is a FlagError naming it", () => {
  assertFlagError(["--bogus=1"], /unknown flag --bogus\b/);
  assertFlagError(["--client-port=9000"], /unknown flag --client-port\b/);
  assertFlagError(["-p"], /unknown flag -p\b/);
  // Also from a flagfile.
  assertFlagError(["--flagfile=a.conf"], /unknown flag --nope\b/, files({ "a.conf": "--nope=1" }));
});

Deno.test("parseFlags: positional arguments and flags without a value are refused", () => {
  assertFlagError(["serve"], /unexpected argument serve/);
  assertFlagError(["--client_port"], /--client_port needs a value/);
});

Deno.test("parseFlags: bad integers name the flag", () => {
  for (const value of ["", "x", "12a", "1.5", "1e3", "0x10", " 9000", "+9000"]) {
    assertFlagError([`--client_port=${value}`], /--client_port/);
  }
  assertFlagError(["--workers=many"], /bad value for --workers: 'many'/);
});

Deno.test("parseFlags: out-of-range integers name the flag and the range", () => {
  assertFlagError(["--client_port=65536"], /--client_port: '65536' \(an integer from 0 to 65535\)/);
  assertFlagError(["--admin_port=-1"], /--admin_port: '-1'/);
  assertFlagError(["--workers=0"], /--workers: '0' \(an integer from 1 to 256\)/);
  assertFlagError(["--workers=257"], /--workers/);
  assertFlagError(["--heartbeat_timeout_sec=0"], /--heartbeat_timeout_sec/);
  assertFlagError(["--max_frame_bytes=2147483648"], /--max_frame_bytes/);
  assertFlagError(["--msg_limit=99999999999999999999"], /--msg_limit/);
});

Deno.test("parseFlags: bad enums name the flag and the choices", () => {
  assertFlagError(["--storage=redis"], /--storage: 'redis' \(one of memory, sqlite, cassandra\)/);
  assertFlagError(["--auth=ldap"], /--auth: 'ldap'/);
  assertFlagError(["--log_level=trace"], /--log_level: 'trace'/);
  assertFlagError(["--storage=SQLITE"], /--storage/); // case matters
});

Deno.test("helpText: lists every flag of Config, and --flagfile", () => {
  const text = helpText();
  // Config is a type; at run time its keys are those of a parsed config.
  const keys = Object.keys(config([]));
  for (const key of KNOWN_KEYS) assert.ok(keys.includes(key), `Config lost ${key}`);
  for (const key of keys) {
    assert.match(text, new RegExp(`^  --${key}=`, "m"), `help lacks --${key}`);
  }
  assert.match(text, /^ {2}--flagfile=PATH/m);
  // Nothing listed that is not a flag.
  const listed = [...text.matchAll(/^ {2}--([a-z_]+)=/gm)].map((m) => m[1]);
  assert.deepEqual(listed.sort(), [...keys, "flagfile"].sort());
  // Each flag's default is shown, and is the value parseFlags([]) gives.
  const defaults = config([]) as unknown as Record<string, string | number>;
  for (const key of keys) {
    const shown = new RegExp(`^  --${key}=(".*")$`, "m").exec(text);
    assert.ok(shown, `--${key} shows no default`);
    assert.equal(JSON.parse(shown[1]), String(defaults[key]), `--${key}`);
  }
  assert.match(text, /^ {2}--client_port="9000"$/m);
});
