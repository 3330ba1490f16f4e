/**
 * Schema tooling for Cassandra, apart from the runtime store: the statements of
 * `scripts/create_schema.cql` for any keyspace name and replication, and applying them
 * (`deno task schema`).
 *
 * @module
 */

import type cassandra from "cassandra-driver";
import { DEFAULT_KEYSPACE } from "./cassandra.ts";

/** Where the keyspace goes, for {@linkcode applySchema}. */
export interface SchemaOptions {
  /** Keyspace name (default `ipush`). */
  keyspace?: string;
  /** The CQL replication map, e.g. `{'class':'NetworkTopologyStrategy','dc1':3}`. */
  replication?: string;
}

const DEFAULT_REPLICATION = "{'class': 'SimpleStrategy', 'replication_factor': 1}";
const SCHEMA_FILE = new URL("../../scripts/create_schema.cql", import.meta.url);

/**
 * Creates the keyspace (if missing) with `replication` and the tables of
 * `scripts/create_schema.cql` in it (if missing), through `client`, which must not be bound
 * to a keyspace that does not exist yet.
 */
export async function applySchema(
  client: cassandra.Client,
  options: SchemaOptions = {},
): Promise<void> {
  for (const statement of schemaStatements(await Deno.readTextFile(SCHEMA_FILE), options)) {
    await client.execute(statement);
  }
}

/**
 * The statements of the schema file for this keyspace: its own CREATE KEYSPACE with the
 * given replication, no USE, and every table named in the keyspace.
 */
export function schemaStatements(cql: string, options: SchemaOptions = {}): string[] {
  const keyspace = options.keyspace ?? DEFAULT_KEYSPACE;
  if (!/^[A-Za-z][A-Za-z0-9_]{0,47}$/.test(keyspace)) {
    throw new Error(`invalid keyspace name: ${keyspace}`);
  }
  const replication = options.replication ?? DEFAULT_REPLICATION;
  if (!/^\{[^;]*\}$/.test(replication.trim())) {
    throw new Error(`replication must be a CQL map such as ${DEFAULT_REPLICATION}`);
  }
  const statements = cql
    .replace(/--.*$/gm, "")
    .split(/;\s*$/m)
    .map((statement) => statement.trim().replace(/\s+/g, " "))
    .filter((statement) => statement !== "");
  const result: string[] = [];
  for (const statement of statements) {
    if (/^CREATE KEYSPACE /i.test(statement)) {
      result.push(`CREATE KEYSPACE IF NOT EXISTS ${keyspace} WITH replication = ${replication}`);
    } else if (/^USE /i.test(statement)) {
      continue;
    } else if (/^CREATE TABLE IF NOT EXISTS \w+ /i.test(statement)) {
      result.push(statement.replace(/^(CREATE TABLE IF NOT EXISTS) (\w+)/i, `$1 ${keyspace}.$2`));
    } else {
      throw new Error(`unexpected statement in the schema file: ${statement.slice(0, 60)}`);
    }
  }
  return result;
}
