// Relay mode across a timeline switch: the relay follows a standby of the primary; the standby
// is promoted; the relay follows timeline 2 as pg_receivewal does, and a pg_receivewal behind the
// relay gets the history file and the new timeline's segments, byte-identical to the origin's.

import assert from "node:assert/strict";
import {
  assertSegmentsMatch,
  basebackup,
  filesEqual,
  startPrimary,
  startStandby,
  tempDir,
} from "./_pg.ts";
import { listDir, spawnReceivewal, waitForFiles } from "./_relay_util.ts";
import { startRelayMode } from "./_relay_mode_util.ts";

Deno.test("relay mode: the relay follows its upstream's promotion to timeline 2", async () => {
  await using p = await startPrimary({ walSegSize: 1 });
  await p.sql("CREATE TABLE t (x int)");
  await using sBackup = await basebackup(p);
  await using s = await startStandby({
    dataDir: sBackup.dataDir,
    primaryConninfo: p.conninfo({ application_name: "to_promote" }),
  });
  await using dir = await tempDir("walrelay-tli-");
  await using relay = await startRelayMode({ walDir: dir.path, upstream: s.conninfo() });
  await using out = await tempDir("walrelay-tli-rw-");
  await using rw = await spawnReceivewal(relay.port, ["-D", out.path]);

  await p.sql("INSERT INTO t SELECT generate_series(1, 10000)");
  await s.waitForReplay(await p.currentLsn());
  await p.stop("fast");
  await s.promote();
  await s.sql("INSERT INTO t SELECT generate_series(10001, 20000)");
  const last = await s.switchWal();
  assert.match(last, /^00000002/);

  await waitForFiles(out.path, ["00000002.history", last], {
    proc: rw,
    timeoutMs: 60_000,
  }).catch((e) => {
    throw new Error(
      `${
        (e as Error).message
      }\n--- relay ---\n${relay.stderr()}\n--- pg_receivewal ---\n${rw.stderr()}`,
    );
  });
  await waitForFiles(out.path, [last], { sizes: 1 << 20 });
  assert.ok(await filesEqual(`${dir.path}/00000002.history`, `${s.walDir}/00000002.history`));
  assert.ok(await filesEqual(`${out.path}/00000002.history`, `${s.walDir}/00000002.history`));
  const segs = await assertSegmentsMatch(out.path, s.walDir);
  // Timeline 1 reached pg_receivewal through the relay too (its last segment as a .partial).
  const names = await listDir(out.path);
  assert.ok(names.some((n) => n.startsWith("00000001")), names.join(", "));
  assert.ok(segs.includes(last), segs.join(", "));
  await assertSegmentsMatch(dir.path, s.walDir);
  assert.match(relay.stderr(), /switched to timeline 2/);
});
