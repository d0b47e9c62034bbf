/**
 * Helpers of the archive tests: the relay serving an archive that a real tool wrote, checked
 * against the primary that wrote the WAL.
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type BaseBackup,
  firstDifference,
  isSegmentName,
  type PgCluster,
  pgPrograms,
  type RelayProcess,
  startStandby,
  tempDir,
} from "./_pg.ts";
import { formatLsn, listDir, lsn, replPsqlOk, runReceivewal, touch } from "./_relay_util.ts";
import { PGBENCH_DIGEST } from "./_relay_mode_util.ts";

/** The segment size the archive tests write: 1 MB. */
export const SEG = 1 << 20;

/** The primary's complete segments, read now (keep `wal_keep_size` large so none is recycled). */
export async function primarySegments(pg: PgCluster): Promise<Map<string, Uint8Array>> {
  const out = new Map<string, Uint8Array>();
  for (const name of await listDir(pg.walDir)) {
    if (isSegmentName(name)) out.set(name, await Deno.readFile(join(pg.walDir, name)));
  }
  return out;
}

/** The relay's end of WAL, from IDENTIFY_SYSTEM. */
export async function relayEnd(relay: RelayProcess): Promise<bigint> {
  const row = await replPsqlOk(relay.port, "IDENTIFY_SYSTEM");
  return lsn(row.split("|")[2]!);
}

/**
 * A plain `pg_receivewal` pulls everything the relay serves, from the segment `first` to the
 * relay's end: each complete segment it writes, and its `.partial` up to the end, must be the
 * primary's bytes. Returns the number of complete segments compared.
 */
export async function pullMatchesPrimary(
  relay: RelayProcess,
  first: string,
  primary: Map<string, Uint8Array>,
  major: number,
): Promise<number> {
  const end = await relayEnd(relay);
  await using target = await tempDir("walrelay-archive-recv-", { major });
  const marker = join(target.path, `${first}.partial`);
  await touch(marker);
  await (await pgPrograms(major)).chown(marker);
  const r = await runReceivewal(
    relay.port,
    // It stops once past --endpos: one byte before the end stops it at the end.
    ["-D", target.pgPath, "--no-loop", "--no-sync", "--endpos", formatLsn(end - 1n)],
    120_000,
    major,
  );
  assert.equal(r.code, 0, `pg_receivewal:\n${r.stderr}\n--- relay ---\n${relay.stderr()}`);
  let complete = 0;
  for (const name of await listDir(target.path)) {
    const got = await Deno.readFile(join(target.path, name));
    const want = primary.get(name.replace(/\.partial$/, ""));
    assert.ok(want, `${name}: not among the primary's segments`);
    if (name.endsWith(".partial")) {
      const cut = Number(end % BigInt(SEG));
      assert.equal(
        firstDifference(got.subarray(0, cut), want.subarray(0, cut)),
        -1,
        `${name} up to the end`,
      );
    } else {
      assert.equal(firstDifference(got, want), -1, `${name} differs from the primary's`);
      complete++;
    }
  }
  return complete;
}

/** A standby from `backup` streams from the relay until its data equals the primary's. */
export async function standbyReachesPrimary(
  backup: BaseBackup,
  relay: RelayProcess,
  want: string,
): Promise<void> {
  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: relay.conninfo({ application_name: "archive_standby" }),
  });
  let last = "";
  for (const t0 = Date.now(); Date.now() - t0 < 60_000;) {
    last = await standby.sql(PGBENCH_DIGEST);
    if (last === want) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(
    `standby did not reach the primary's data\nwant ${want}\ngot  ${last}\n--- standby ---\n${await standby
      .log()}\n--- relay ---\n${relay.stderr()}`,
  );
}
