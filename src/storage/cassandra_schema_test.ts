import assert from "node:assert/strict";
import { schemaStatements } from "./cassandra_schema.ts";

Deno.test("schemaStatements names the keyspace everywhere and sets its replication", () => {
  const cql = Deno.readTextFileSync(new URL("../../scripts/create_schema.cql", import.meta.url));
  const replication = "{'class': 'NetworkTopologyStrategy', 'dc1': 3}";
  const statements = schemaStatements(cql, { keyspace: "push_eu", replication });
  assert.equal(
    statements[0],
    `CREATE KEYSPACE IF NOT EXISTS push_eu WITH replication = ${replication}`,
  );
  assert.deepEqual(
    statements.slice(1).map((s) => s.match(/^CREATE TABLE IF NOT EXISTS (\S+) /)?.[1]),
    [
      "push_eu.messages",
      "push_eu.user_state",
      "push_eu.device_cursors",
      "push_eu.channel_members",
      "push_eu.user_channels",
      "push_eu.bus_marks",
    ],
  );
  assert.throws(() => schemaStatements(cql, { keyspace: "x; DROP" }), /invalid keyspace/);
  assert.throws(() => schemaStatements(cql, { replication: "3" }), /CQL map/);
});
