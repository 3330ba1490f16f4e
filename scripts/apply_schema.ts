/**
 * Applies `scripts/create_schema.cql` to a Cassandra cluster with the keyspace name and
 * replication given (every statement is IF NOT EXISTS: running it again is harmless).
 *
 * ```sh
 * deno task schema -- --contact_points=10.0.0.1:9042,10.0.0.2:9042 --local_dc=dc1 \
 *   --keyspace=ipush --replication="{'class':'NetworkTopologyStrategy','dc1':3}"
 * deno task schema -- --keyspace=ipush_eu --print     # only print the CQL, for cqlsh
 * ```
 *
 * Flags (all `--name=value`): `contact_points` (127.0.0.1:9042), `local_dc` (datacenter1),
 * `keyspace` (ipush), `replication` (SimpleStrategy, one replica), `print`.
 *
 * @module
 */

import { parseArgs } from "node:util";
import cassandra from "cassandra-driver";
import { applySchema, schemaStatements } from "../src/storage/cassandra_schema.ts";

const { values } = parseArgs({
  // `deno task schema -- ...` may pass the "--" through.
  args: Deno.args.filter((arg) => arg !== "--"),
  options: {
    contact_points: { type: "string", default: "127.0.0.1:9042" },
    local_dc: { type: "string", default: "datacenter1" },
    keyspace: { type: "string" },
    replication: { type: "string" },
    print: { type: "boolean", default: false },
  },
});
const schema = { keyspace: values.keyspace, replication: values.replication };

if (values.print) {
  const cql = await Deno.readTextFile(new URL("create_schema.cql", import.meta.url));
  for (const statement of schemaStatements(cql, schema)) console.log(`${statement};`);
} else {
  const client = new cassandra.Client({
    contactPoints: values.contact_points.split(",").map((point) => point.trim()),
    localDataCenter: values.local_dc,
  });
  try {
    await applySchema(client, schema);
    console.log(`schema applied to keyspace ${values.keyspace ?? "ipush"}`);
  } finally {
    await client.shutdown();
  }
}
