/**
 * The admin API for unit tests of its endpoints: a handler with defaults that stay out of the
 * way (no shards, no token, small limits, admission that never refuses), `extra` overriding.
 *
 * @module
 */

import { Admission } from "../admin/admission.ts";
import { adminHandler, type AdminOptions, type AdminRoutes } from "../admin/api.ts";
import { StatsBook } from "../stats/report.ts";

/** The handler `Deno.serve` would be given, with `extra` over the test defaults. */
export function testAdmin(
  extra: Partial<AdminOptions> = {},
): (request: Request) => Promise<Response> {
  return adminHandler({
    routes: {} as AdminRoutes,
    stats: new StatsBook(),
    maxBodyBytes: 64,
    msgLimit: 100,
    refreshStats: () => Promise.resolve(),
    defaultHost: "127.0.0.1",
    draining: () => false,
    log: () => {},
    admission: new Admission({ targetMs: 1000, maxInFlight: 1000 }),
    adminToken: "",
    ...extra,
  });
}
