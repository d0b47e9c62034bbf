// Directory mode serves BASE_BACKUP from a backup imported with `walrelay backup import`: for
// 15, 17 and 18, that major's pg_basebackup in plain and tar format, -X stream/fetch/none, -P, -R
// and a throttled run; server-side gzip (with levels), lz4 and zstd; pg_verifybackup passes on
// each, and tar output equals what was stored.

import assert from "node:assert/strict";
import { join } from "node:path";
import { zstdDecompressSync } from "node:zlib";
import { launchChromium } from "./_browser.ts";
import { filesEqual, freePort, run, startPrimary, startRelay, tempDir } from "./_pg.ts";
import {
  chownTree,
  importedBackup,
  pgBasebackup,
  pgBasebackupOk,
  untar,
  verifyBackup,
  walrelayBackup,
} from "./_base_backup_util.ts";

/** The dashboard, in headless Chromium, lists the stored backup, without console errors. */
async function dashboardShows(url: string, id: string): Promise<void> {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    const problems: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(m.text());
    });
    page.on("pageerror", (e) => problems.push(e.message));
    await page.goto(url);
    await page.locator("#base-backups tbody tr").first().waitFor({ timeout: 10_000 });
    assert.equal(await page.locator("#base-backups tbody tr td").first().textContent(), id);
    assert.match(await page.locator("#backup-summary").textContent() ?? "", /1 stored/);
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
}

for (const major of [15, 17, 18]) {
  Deno.test(`directory mode serves an imported base backup to pg_basebackup ${major}`, async () => {
    await using pg = await startPrimary({ major, walSegSize: 1, conf: { fsync: "off" } });
    await pg.sql("CREATE TABLE t AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g");
    const programs = pg.programs;
    await using walDir = await tempDir("walrelay-bbwal-");
    await using work = await programs.tempDir("walrelay-bbwork-");
    const { tarDir, output } = await importedBackup(pg, walDir, work);
    assert.match(output, new RegExp(`stored base backup ".*PostgreSQL ${major}`));
    // Import checks the WAL directory holds the backup's WAL range, and refuses a second copy.
    const label = (await run(["tar", "-xOf", join(tarDir, "base.tar"), "backup_label"])).stdout;
    const startSegment = /\(file ([0-9A-F]{24})\)/.exec(label)![1]!;
    await using holey = await tempDir("walrelay-bbholey-");
    for (const e of Deno.readDirSync(walDir.path)) {
      if (e.isFile && e.name !== startSegment) {
        await Deno.copyFile(join(walDir.path, e.name), join(holey.path, e.name));
      }
    }
    const refused = await walrelayBackup(["import", tarDir, "--wal-dir", holey.path]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, new RegExp(`WAL file "${startSegment}" is missing`));
    const again = await walrelayBackup(["import", tarDir, "--wal-dir", walDir.path]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /is already stored/);

    const httpPort = await freePort();
    await using relay = await startRelay({
      walDir: walDir.path,
      args: ["--http", `127.0.0.1:${httpPort}`],
    });
    const conninfo = relay.conninfo();
    const ctx = () => `--- relay ---\n${relay.stderr()}`;

    // -Ft -X stream: the archives and manifest exactly as stored.
    const tar = join(work.path, "tarstream");
    await pgBasebackupOk(programs, conninfo, tar, ["-Ft", "-X", "stream"], ctx());
    assert.ok(
      await filesEqual(join(tar, "base.tar"), join(tarDir, "base.tar")),
      "base.tar differs",
    );
    assert.ok(
      await filesEqual(join(tar, "backup_manifest"), join(tarDir, "backup_manifest")),
      "backup_manifest differs",
    );
    const extracted = join(work.path, "extracted");
    await untar(join(tar, "base.tar"), extracted);
    await untar(join(tar, "pg_wal.tar"), join(extracted, "pg_wal"));
    await Deno.copyFile(join(tar, "backup_manifest"), join(extracted, "backup_manifest"));
    await chownTree(programs, extracted);
    await verifyBackup(programs, extracted);

    // Plain, -X stream, -P, -R: primary_conninfo points at the relay.
    const plain = join(work.path, "plain");
    const err = await pgBasebackupOk(
      programs,
      conninfo,
      plain,
      ["-X", "stream", "-P", "-R"],
      ctx(),
    );
    assert.match(err, /100%/);
    await verifyBackup(programs, plain);
    const auto = await Deno.readTextFile(join(plain, "postgresql.auto.conf"));
    assert.match(auto, new RegExp(`primary_conninfo = '.*port=${relay.port}`));

    // Plain, -X fetch (the WAL inside base.tar, from the relay's store), SHA256 checksums.
    const fetched = join(work.path, "fetch");
    await pgBasebackupOk(
      programs,
      conninfo,
      fetched,
      ["-X", "fetch", "--manifest-checksums=SHA256", "--max-rate=32M"],
      ctx(),
    );
    await verifyBackup(programs, fetched);
    const manifest = await Deno.readTextFile(join(fetched, "backup_manifest"));
    assert.match(manifest, /"Checksum-Algorithm": "SHA256"/);
    assert.match(manifest, /pg_wal\/archive_status\/[0-9A-F]{24}\.done/);

    // -X none, force-encoded manifest: verified without WAL.
    const none = join(work.path, "none");
    await pgBasebackupOk(
      programs,
      conninfo,
      none,
      ["-X", "none", "--manifest-force-encode"],
      ctx(),
    );
    await verifyBackup(programs, none, ["-n"]);
    assert.match(await Deno.readTextFile(join(none, "backup_manifest")), /"Encoded-Path"/);

    // --no-manifest: no manifest in the COPY, the archive as stored.
    const nomf = join(work.path, "nomanifest");
    await pgBasebackupOk(programs, conninfo, nomf, ["-Ft", "-X", "none", "--no-manifest"], ctx());
    await assert.rejects(Deno.stat(join(nomf, "backup_manifest")));
    assert.ok(await filesEqual(join(nomf, "base.tar"), join(tarDir, "base.tar")));

    // Server-side gzip, as pg_basebackup asks for it.
    const gz = join(work.path, "gz");
    await pgBasebackupOk(
      programs,
      conninfo,
      gz,
      ["-Ft", "-X", "none", "--compress=server-gzip"],
      ctx(),
    );
    const unzipped = await new Response(
      (await Deno.open(join(gz, "base.tar.gz"))).readable.pipeThrough(
        new DecompressionStream("gzip"),
      ),
    ).bytes();
    assert.deepEqual(unzipped, await Deno.readFile(join(tarDir, "base.tar")));

    // /status lists the stored backup and counts what was sent; /metrics too.
    const status = await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json();
    assert.equal(status.base_backups.stored.length, 1);
    assert.equal(status.base_backups.stored[0].server_version, major);
    assert.equal(status.base_backups.totals.served, 6);
    assert.deepEqual(status.base_backups.serving, []);
    const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
    assert.match(metrics, /^walrelay_base_backups_served_total 6$/m);
    assert.match(metrics, /^walrelay_base_backups_stored 1$/m);
    if (major === 15) {
      await dashboardShows(`http://127.0.0.1:${httpPort}/`, status.base_backups.stored[0].id);
    }

    // The client's gzip level is honoured: 9 packs tighter than 1, and both extract.
    const gzSizes: number[] = [];
    for (const level of [1, 9]) {
      const dir = join(work.path, `gz${level}`);
      await pgBasebackupOk(
        programs,
        conninfo,
        dir,
        ["-Ft", "-X", "none", `--compress=server-gzip:${level}`],
        ctx(),
      );
      const file = join(dir, "base.tar.gz");
      gzSizes.push((await Deno.stat(file)).size);
      const out = join(dir, "extracted");
      await Deno.mkdir(out);
      const tar = await run(["tar", "-xzf", file, "-C", out]);
      assert.equal(tar.code, 0, tar.stderr);
      assert.ok(await filesEqual(join(out, "PG_VERSION"), join(pg.dataDir, "PG_VERSION")));
      const plainTar = await new Response(
        (await Deno.open(file)).readable.pipeThrough(new DecompressionStream("gzip")),
      ).bytes();
      assert.deepEqual(plainTar, await Deno.readFile(join(tarDir, "base.tar")));
    }
    assert.ok(gzSizes[1]! < gzSizes[0]!, `gzip level 9 ${gzSizes[1]} < level 1 ${gzSizes[0]}`);

    // Server-side zstd: -Ft keeps base.tar.zst; plain format decompresses it and verifies.
    const zst = join(work.path, "zst");
    await pgBasebackupOk(
      programs,
      conninfo,
      zst,
      ["-Ft", "-X", "none", "--compress=server-zstd:level=5"],
      ctx(),
    );
    assert.deepEqual(
      new Uint8Array(zstdDecompressSync(await Deno.readFile(join(zst, "base.tar.zst")))),
      await Deno.readFile(join(tarDir, "base.tar")),
    );
    const zplain = join(work.path, "zplain");
    await pgBasebackupOk(
      programs,
      conninfo,
      zplain,
      ["-X", "stream", "--compress=server-zstd"],
      ctx(),
    );
    await verifyBackup(programs, zplain);

    // Server-side lz4: -Ft keeps base.tar.lz4, which lz4 -d reads back as the stored base.tar;
    // plain format decompresses it with liblz4 and verifies.
    const l4 = join(work.path, "lz4");
    await pgBasebackupOk(
      programs,
      conninfo,
      l4,
      ["-Ft", "-X", "none", "--compress=server-lz4"],
      ctx(),
    );
    const l4tar = join(work.path, "lz4.tar");
    const unlz4 = await run(["lz4", "-d", "-q", "-f", join(l4, "base.tar.lz4"), l4tar]);
    assert.equal(unlz4.code, 0, unlz4.stderr);
    assert.ok(
      await filesEqual(l4tar, join(tarDir, "base.tar")),
      "base.tar.lz4 decompresses to base.tar",
    );
    const l4plain = join(work.path, "l4plain");
    await pgBasebackupOk(
      programs,
      conninfo,
      l4plain,
      ["-X", "stream", "--compress=server-lz4:1"],
      ctx(),
    );
    await verifyBackup(programs, l4plain);

    // What walrelay does not do, in PostgreSQL's words.
    const server = await programs.run(
      "pg_basebackup",
      ["-d", conninfo, "-X", "none", "-t", "server:/tmp/x"],
      { asPostgres: true },
    );
    assert.notEqual(server.code, 0);
    assert.match(server.stderr, /base backup target "server" is not supported by walrelay/);
    // TARGET 'blackhole': the whole backup read, nothing sent.
    const hole = await programs.run(
      "pg_basebackup",
      ["-d", conninfo, "-X", "none", "-t", "blackhole", "-P"],
      { asPostgres: true },
    );
    assert.equal(hole.code, 0, hole.stderr);
    if (major >= 17) {
      const inc = await pgBasebackup(programs, conninfo, join(work.path, "inc"), [
        "-X",
        "none",
        `--incremental=${programs.pgPath(join(plain, "backup_manifest"))}`,
      ]);
      assert.notEqual(inc.code, 0);
      assert.match(inc.stderr, /incremental backups are not supported by walrelay/);
    }
  });
}
