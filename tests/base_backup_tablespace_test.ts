// A cluster with a user tablespace, backed up through the relay (read through from the primary):
// -Ft gives the tablespace archive and tablespace_map as the server sent them; plain format gets
// the pg_tblspc symlink the server would have sent instead of the map, relocated with -T, and
// pg_verifybackup passes. For 15, 17 and 18.

import assert from "node:assert/strict";
import { join } from "node:path";
import { filesEqual, startPrimary, tempDir, waitFor } from "./_pg.ts";
import { startRelayMode } from "./_relay_mode_util.ts";
import { pgBasebackupOk, verifyBackup } from "./_base_backup_util.ts";

for (const major of [15, 17, 18]) {
  Deno.test(`relay mode: a tablespace in pg_basebackup ${major}'s tar and plain formats`, async () => {
    await using pg = await startPrimary({ major, walSegSize: 1, conf: { fsync: "off" } });
    const programs = pg.programs;
    await using space = await programs.tempDir("walrelay-ts-");
    const location = programs.pgPath(join(space.path, "ts1"));
    await Deno.mkdir(join(space.path, "ts1"));
    await programs.chown(join(space.path, "ts1"));
    await pg.sql(`CREATE TABLESPACE ts1 LOCATION '${location}'`);
    await pg.sql("CREATE TABLE t TABLESPACE ts1 AS SELECT generate_series(1, 5000) AS g");
    const oid = await pg.sql("SELECT oid FROM pg_tablespace WHERE spcname = 'ts1'");

    await using dir = await tempDir("walrelay-bbts-");
    await using relay = await startRelayMode({ walDir: dir.path, upstream: pg.conninfo() });
    await using work = await programs.tempDir("walrelay-bbts-work-");

    const tar = join(work.path, "tar");
    await pgBasebackupOk(programs, relay.conninfo(), tar, ["-Ft", "-X", "none"], relay.stderr());
    // Stored once the upstream's backup is complete and fsynced, maybe just after the client.
    const stored = await waitFor(async () => {
      const names = (await Array.fromAsync(Deno.readDir(join(dir.path, ".walrelay", "backups"))))
        .map((e) => e.name);
      return names.length === 1 && !names[0]!.startsWith(".tmp-") ? names : undefined;
    }, { timeoutMs: 30_000, message: "the backup was not stored" });
    const backup = join(dir.path, ".walrelay", "backups", stored[0]!);
    assert.ok(await filesEqual(join(tar, `${oid}.tar`), join(backup, `${oid}.tar`)));
    assert.ok(await filesEqual(join(tar, "base.tar"), join(backup, "base.tar")));
    const info = JSON.parse(await Deno.readTextFile(join(backup, "backup.json")));
    assert.deepEqual(info.tablespaces.map((t: { oid: string }) => t.oid), [oid]);
    assert.equal(info.tablespaces[0].location, location);

    // Plain: the symlink entry instead of tablespace_map, the tablespace relocated.
    const plain = join(work.path, "plain");
    const moved = join(work.path, "ts1-copy");
    await pgBasebackupOk(
      programs,
      relay.conninfo(),
      plain,
      ["-X", "stream", "-T", `${location}=${programs.pgPath(moved)}`],
      relay.stderr(),
    );
    assert.equal(await Deno.readLink(join(plain, "pg_tblspc", oid)), programs.pgPath(moved));
    await assert.rejects(Deno.stat(join(plain, "tablespace_map")));
    await verifyBackup(programs, plain);
  });
}
