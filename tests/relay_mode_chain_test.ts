// Relays chain: primary → relay → relay → standby, PostgreSQL's own protocol in between.

import assert from "node:assert/strict";
import { assertSegmentsMatch, basebackup, startPrimary, startStandby, tempDir } from "./_pg.ts";
import { waitForFiles } from "./_relay_util.ts";
import { startRelayMode, waitSame } from "./_relay_mode_util.ts";

const DIGEST = "SELECT count(*), sum(x), md5(string_agg(v, ',' ORDER BY x)) FROM t";

Deno.test("relay mode: a standby behind two chained relays reaches the primary's data", async () => {
  await using pg = await startPrimary({ walSegSize: 1 });
  await pg.sql("CREATE TABLE t (x int PRIMARY KEY, v text)");
  await using dir1 = await tempDir("walrelay-chain1-");
  await using dir2 = await tempDir("walrelay-chain2-");
  await using relay1 = await startRelayMode({ walDir: dir1.path, upstream: pg.conninfo() });
  await using relay2 = await startRelayMode({
    walDir: dir2.path,
    upstream: relay1.conninfo({ application_name: "edge_relay" }),
  });
  await using backup = await basebackup(pg);
  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: relay2.conninfo({ application_name: "leaf" }),
  });
  await pg.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 20000) g");
  await pg.sql("UPDATE t SET v = upper(v) WHERE x % 3 = 0");
  await waitSame(standby, DIGEST, await pg.sql(DIGEST), () => relay1.stderr() + relay2.stderr());

  const last = await pg.switchWal();
  await waitForFiles(dir2.path, [last], { sizes: 1 << 20 });
  const segs = await assertSegmentsMatch(dir2.path, pg.walDir);
  assert.ok(segs.includes(last));
  await assertSegmentsMatch(dir1.path, pg.walDir);
  // The first relay is the second's upstream, under the name the second gave.
  assert.match(relay2.stderr(), /connected to upstream/);
  assert.match(relay1.stderr(), /edge_relay/);
});
