// --retain in relay mode: the directory stays within its byte budget as WAL flows, except for
// segments a slot on the relay still needs.

import assert from "node:assert/strict";
import { startPrimary, tempDir, waitFor } from "./_pg.ts";
import { startRelayMode } from "./_relay_mode_util.ts";
import { replPsqlOk } from "./_relay_util.ts";
import { parseLsn } from "../lib/wal/lsn.ts";

const SEG = 1024 * 1024;

function completeSegments(dir: string): string[] {
  return [...Deno.readDirSync(dir)].map((e) => e.name).filter((n) => /^[0-9A-F]{24}$/.test(n))
    .sort();
}

async function writeWal(pg: { sql(q: string): Promise<string> }, megabytes: number) {
  await pg.sql(
    "SELECT count(pg_logical_emit_message(false, 'r', repeat(md5(g::text), 32768))) " +
      `FROM generate_series(1, ${megabytes}) g`,
  );
  await pg.sql("SELECT pg_switch_wal()");
}

Deno.test("relay mode: --retain keeps the budget, but never removes WAL a slot needs", async () => {
  await using pg = await startPrimary({ walSegSize: 1, conf: { wal_compression: "off" } });
  await using dir = await tempDir("walrelay-retain-");
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo(),
    args: ["--retain", "4MB"],
  });
  // A slot on the relay that holds WAL from now on.
  await replPsqlOk(relay.port, "CREATE_REPLICATION_SLOT keep PHYSICAL RESERVE_WAL");
  const held = (await replPsqlOk(relay.port, "READ_REPLICATION_SLOT keep")).split("|")[1]!;
  assert.match(held, /^[0-9A-F]+\/[0-9A-F]+$/);

  await writeWal(pg, 10);
  const endLsn = await pg.currentLsn();
  await waitFor(async () => {
    const [, , end] = (await replPsqlOk(relay.port, "IDENTIFY_SYSTEM")).split("|");
    return parseLsn(end!)! >= parseLsn(endLsn)! || undefined;
  }, { message: "the relay did not receive the WAL", timeoutMs: 30_000 });
  const kept = completeSegments(dir.path);
  // Everything from the slot's restart_lsn is still there, over the 4 MB budget.
  assert.ok(kept.length * SEG > 4 * SEG, `slot must hold segments back, kept ${kept.length}`);

  // Without the slot, the next completed segment trims the directory to the budget.
  await replPsqlOk(relay.port, "DROP_REPLICATION_SLOT keep");
  await writeWal(pg, 2);
  await waitFor(() => completeSegments(dir.path).length <= 4 || undefined, {
    message: `still ${completeSegments(dir.path).length} complete segments after the slot went`,
    timeoutMs: 30_000,
  });
});
