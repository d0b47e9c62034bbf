// Hot standby feedback through a relay: the primary holds back vacuum for a standby behind it.
// The primary runs in XID epoch 7, so feedback forwarded with a wrong epoch is ignored by its
// walsender (TransactionIdInRecentPast) and backend_xmin stays NULL.

import assert from "node:assert/strict";
import { basebackup, startPrimary, startStandby, tempDir, waitFor } from "./_pg.ts";
import { startRelayMode } from "./_relay_mode_util.ts";

Deno.test("relay mode: a standby's hot standby feedback reaches the primary, epoch included", async () => {
  await using pg = await startPrimary({ walSegSize: 1, resetwalArgs: ["-e", "7"] });
  const full = BigInt(await pg.sql("SELECT txid_current()"));
  assert.equal(full >> 32n, 7n, "pg_resetwal -e 7 did not set the epoch");
  await pg.sql("CREATE TABLE t AS SELECT generate_series(1, 100) x");
  await using dir = await tempDir("walrelay-feedback-");
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo({ application_name: "feedback_relay" }),
  });
  await using backup = await basebackup(pg);
  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: relay.conninfo({ application_name: "leaf" }),
    conf: { hot_standby_feedback: "on" },
  });
  // An open snapshot on the standby: its xmin is what the primary must keep.
  await standby.sql("SELECT count(*) FROM t");
  const xmin = await waitFor(async () => {
    const v = await pg.sql(
      "SELECT backend_xmin FROM pg_stat_replication WHERE application_name = 'feedback_relay'",
    );
    return v !== "" ? Number(v) : undefined;
  }, {
    timeoutMs: 20_000,
    message: "the primary never showed the relay's backend_xmin",
  });
  const current = Number(full & 0xffffffffn);
  assert.ok(xmin >= 3 && xmin <= current + 10, `backend_xmin ${xmin} vs current ${current}`);
});
