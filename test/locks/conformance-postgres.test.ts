import { postgresBackend, postgresCapabilities } from "../../src/locks/postgres/index.js";
import { parseLockUrl, type PostgresLockSpec } from "../../src/locks/url.js";
import { PG_BIN, startPostgres, type PgServer } from "../support/postgres-server.js";
import { conformance } from "./conformance.js";

let server: PgServer | undefined;
let frozen = false;

function spec(url: string): PostgresLockSpec {
  const s = parseLockUrl(url);
  if (s.kind !== "postgres") throw new Error(`not a postgres URL: ${url}`);
  return s;
}

conformance({
  title: "postgres (single server)",
  capabilities: postgresCapabilities,
  async start() {
    if (PG_BIN === undefined) return "PostgreSQL server binaries not found: apt-get install postgresql";
    server = await startPostgres();
    return undefined;
  },
  async stop() {
    await server?.stop();
  },
  open(name, identity, timing) {
    const url = server?.url ?? "";
    return postgresBackend.open(spec(url), { name, identity, ...timing, env: {} });
  },
  // SIGSTOP of the postmaster and every backend: connections stay open, nothing answers.
  async freeze() {
    frozen = true;
    server?.pause();
  },
  async thaw() {
    if (!frozen) return;
    frozen = false;
    server?.resume();
  },
  // The lease row only: the terms table keeps the counter, as after an operator's DELETE.
  async deleteRecord(name) {
    await server?.psql("DELETE FROM leader_run_leases WHERE name = $1", [name]);
  },
});
