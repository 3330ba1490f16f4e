/**
 * The dashboard at `GET /dashboard` on the admin port: a page the daemon serves itself, with
 * its script, its style and the chart library (npm `uplot`, served from here: no CDN), all
 * read once at start. The page holds no data: it reads the ordinary admin endpoints
 * (`/metrics`, `/nodes`, `/readyz`, `/cluster`, `/pub`, `/presence`) from the browser, so whatever guards
 * them (the admin token) guards the dashboard's data; the page asks for the token when a
 * request is answered 401 and sends it as a Bearer header (docs/operations.md).
 *
 * @module
 */

import type { Endpoint } from "./api.ts";

const HERE = new URL("./dashboard/", import.meta.url);
const UPLOT = new URL("../../node_modules/uplot/dist/", import.meta.url);

/** What is served, by path: the file and its content type. */
const FILES: Record<string, { file: URL; type: string }> = {
  "/dashboard": { file: new URL("index.html", HERE), type: "text/html; charset=utf-8" },
  "/dashboard/": { file: new URL("index.html", HERE), type: "text/html; charset=utf-8" },
  "/dashboard/app.js": { file: new URL("app.js", HERE), type: "text/javascript; charset=utf-8" },
  "/dashboard/style.css": { file: new URL("style.css", HERE), type: "text/css; charset=utf-8" },
  "/dashboard/uplot.js": {
    file: new URL("uPlot.iife.min.js", UPLOT),
    type: "text/javascript; charset=utf-8",
  },
  "/dashboard/uplot.css": {
    file: new URL("uPlot.min.css", UPLOT),
    type: "text/css; charset=utf-8",
  },
};

/**
 * The dashboard's endpoints, by path, for `AdminOptions.mounts`; each is marked `page`: it
 * serves no data of the node. Fails, naming the file, when one is missing.
 */
export async function dashboardEndpoints(): Promise<Record<string, Endpoint>> {
  const endpoints: Record<string, Endpoint> = {};
  for (const [path, { file, type }] of Object.entries(FILES)) {
    let body: Uint8Array;
    try {
      body = await Deno.readFile(file);
    } catch (error) {
      throw new Error(`dashboard: cannot read ${file.pathname}: ${(error as Error).message}`);
    }
    endpoints[path] = {
      name: "Dashboard",
      methods: ["GET"],
      page: true,
      handle: () =>
        Promise.resolve(
          new Response(body.slice(), {
            headers: { "content-type": type, "cache-control": "no-cache" },
          }),
        ),
    };
  }
  return endpoints;
}
