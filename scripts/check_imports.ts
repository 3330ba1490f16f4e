/**
 * Fails on an import cycle between the project's files, and on an import that crosses the
 * layers of docs/architecture.md the wrong way. Reads the module graph from
 * `deno info --json` (as the Deno standard library's own cycle check does), over every
 * TypeScript file of the project, so tests and benches are held to it too.
 *
 * ```sh
 * deno run -A scripts/check_imports.ts      # part of `deno task check`
 * ```
 *
 * Type-only imports count: a cycle of types is still a cycle a reader has to untangle.
 *
 * @module
 */

const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname);

/**
 * The layers of `src/`, lowest first, and what each may import beside itself. A layer not
 * listed may not be imported from `src/`. Keep in step with docs/architecture.md.
 */
export const LAYERS: Record<string, readonly string[]> = {
  core: [],
  client: [],
  thread: ["core"],
  protocol: ["core"],
  config: ["core", "storage"],
  storage: ["core"],
  stats: ["core"],
  auth: ["core", "config"],
  transport: ["core", "protocol", "stats", "auth"],
  session: ["core", "protocol", "transport", "stats"],
  shard: [
    "core",
    "thread",
    "protocol",
    "config",
    "storage",
    "stats",
    "auth",
    "transport",
    "session",
  ],
  cluster: ["core", "thread", "config", "stats"],
  admin: ["core", "stats"],
  node: [
    "core",
    "thread",
    "config",
    "storage",
    "stats",
    "auth",
    "transport",
    "shard",
    "cluster",
    "admin",
  ],
  testing: [
    "core",
    "thread",
    "protocol",
    "config",
    "storage",
    "stats",
    "auth",
    "transport",
    "session",
    "shard",
    "admin",
  ],
};

interface Module {
  local?: string;
  dependencies?: { code?: { specifier?: string }; type?: { specifier?: string } }[];
}

/** The project's TypeScript files, relative to the root (node_modules and caches left out). */
function projectFiles(dir = ""): string[] {
  const files: string[] = [];
  for (const entry of Deno.readDirSync(ROOT + dir)) {
    const path = dir + entry.name;
    if (entry.isDirectory) {
      if (!["node_modules", ".cache", ".git", "data"].includes(entry.name)) {
        files.push(...projectFiles(`${path}/`));
      }
    } else if (entry.name.endsWith(".ts")) files.push(path);
  }
  return files;
}

/** file → the project files it imports, from one `deno info --json` over every file. */
async function importGraph(files: string[]): Promise<Map<string, string[]>> {
  // `deno info` takes one root; a generated module that imports every file is that root.
  const root = await Deno.makeTempFile({ suffix: ".ts" });
  await Deno.writeTextFile(root, files.map((f) => `import "${ROOT}${f}";\n`).join(""));
  try {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", root],
      stdout: "piped",
      stderr: "piped",
    }).output();
    if (!output.success) throw new Error(new TextDecoder().decode(output.stderr));
    const { modules } = JSON.parse(new TextDecoder().decode(output.stdout)) as {
      modules: Module[];
    };
    const graph = new Map<string, string[]>();
    for (const module of modules) {
      const from = relative(module.local);
      if (from === undefined) continue;
      const to = (module.dependencies ?? [])
        .flatMap((d) => [d.code?.specifier, d.type?.specifier])
        .map((specifier) =>
          specifier?.startsWith("file://") ? relative(new URL(specifier).pathname) : undefined
        )
        .filter((path): path is string => path !== undefined);
      graph.set(from, [...new Set(to)]);
    }
    return graph;
  } finally {
    await Deno.remove(root);
  }
}

function relative(path: string | undefined): string | undefined {
  if (!path) return undefined;
  const decoded = decodeURIComponent(path);
  return decoded.startsWith(ROOT) && !decoded.includes("/node_modules/")
    ? decoded.slice(ROOT.length)
    : undefined;
}

/** The strongly connected components with more than one file (Tarjan): the cycles. */
export function cycles(graph: Map<string, string[]>): string[][] {
  let index = 0;
  const indexes = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (node: string) => {
    indexes.set(node, index);
    low.set(node, index++);
    stack.push(node);
    onStack.add(node);
    for (const next of graph.get(node) ?? []) {
      if (!indexes.has(next)) {
        visit(next);
        low.set(node, Math.min(low.get(node)!, low.get(next)!));
      } else if (onStack.has(next)) {
        low.set(node, Math.min(low.get(node)!, indexes.get(next)!));
      }
    }
    if (low.get(node) === indexes.get(node)) {
      const component: string[] = [];
      let member: string;
      do {
        member = stack.pop()!;
        onStack.delete(member);
        component.push(member);
      } while (member !== node);
      if (component.length > 1 || (graph.get(node) ?? []).includes(node)) {
        found.push(component.sort());
      }
    }
  };
  for (const node of graph.keys()) if (!indexes.has(node)) visit(node);
  return found;
}

/** The `src/` layer of a file, or undefined outside `src/` (entry points, tests, benches). */
function layerOf(file: string): string | undefined {
  const match = /^src\/([^/]+)\//.exec(file);
  return match?.[1];
}

/**
 * Imports from one `src/` layer into another that the table does not allow. A unit test (a
 * `_test.ts` beside the code) may also import the shared test helpers of `src/testing/`.
 */
export function layerViolations(graph: Map<string, string[]>): string[] {
  const problems: string[] = [];
  for (const [from, targets] of graph) {
    const layer = layerOf(from);
    if (layer === undefined) continue;
    const allowed = from.endsWith("_test.ts") ? [...LAYERS[layer] ?? [], "testing"] : LAYERS[layer];
    if (!allowed) {
      problems.push(`${from}: src/${layer}/ is not a layer of docs/architecture.md`);
      continue;
    }
    for (const to of targets) {
      const target = layerOf(to);
      if (target === undefined) {
        problems.push(`${from} imports ${to}, outside src/`);
      } else if (target !== layer && !allowed.includes(target)) {
        problems.push(`${from} imports ${to}: ${layer} may not import ${target}`);
      }
    }
  }
  return problems;
}

if (import.meta.main) {
  const graph = await importGraph(projectFiles());
  const found = cycles(graph);
  for (const cycle of found) console.error(`import cycle: ${cycle.join(" ↔ ")}`);
  const crossings = layerViolations(graph);
  for (const problem of crossings) console.error(`layering: ${problem}`);
  if (found.length > 0 || crossings.length > 0) Deno.exit(1);
  console.log(`imports: ${graph.size} files, no cycle, layers as docs/architecture.md says`);
}
