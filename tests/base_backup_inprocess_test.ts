// BASE_BACKUP against an in-process relay serving the bundled WAL, with a synthetic backup in
// its store, under the resource sanitizers: a whole answer, then a client that goes away in the
// middle of the COPY; no file, socket or timer is left behind, the connection and the relay stay
// usable, and the counters say one served, one failed.

import assert from "node:assert/strict";
import { PgClient } from "../lib/pgwire/client.ts";
import { MessageBuilder } from "../lib/pgwire/messages.ts";
import { parseDataRow } from "../lib/pgwire/query_result.ts";
import { silentLogger } from "../lib/log.ts";
import { WalRelay } from "../lib/server.ts";
import { BackupStore } from "../lib/backup/store.ts";
import { buildManifest, FileChecksum } from "../lib/backup/manifest.ts";
import { buildTarHeader } from "../lib/backup/tar.ts";
import { copyTestdata } from "./_pg.ts";

const enc = new TextEncoder();

/** A base.tar of 15 (backup_label, PG_VERSION, a 4 MB relation, pg_control) and its manifest. */
function backupFiles(): { tar: Uint8Array; manifest: Uint8Array } {
  const files: [string, Uint8Array][] = [
    [
      "backup_label",
      enc.encode(
        "START WAL LOCATION: 0/700028 (file 000000010000000000000007)\n" +
          "CHECKPOINT LOCATION: 0/700060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n" +
          "START TIME: 2026-12-01 21:48:33 UTC\nLABEL: synthetic\nSTART TIMELINE: 1\n",
      ),
    ],
    ["tablespace_map", new Uint8Array(0)],
    ["PG_VERSION", enc.encode("15\n")],
    ["base/5/16384", new Uint8Array(4 << 20).map((_, i) => i % 253)],
    ["global/pg_control", new Uint8Array(8192).fill(7)],
  ];
  const parts: Uint8Array[] = [];
  for (const [name, content] of files) {
    parts.push(buildTarHeader({
      name,
      mode: 0o600,
      uid: 0,
      gid: 0,
      size: content.length,
      mtime: 1764625713,
      typeflag: "0",
      linkname: "",
    }));
    parts.push(content, new Uint8Array((512 - (content.length % 512)) % 512));
  }
  parts.push(new Uint8Array(1024));
  const manifest = buildManifest({
    version: 1,
    head: ['{ "PostgreSQL-Backup-Manifest-Version": 1,'],
    files: files.map(([path, content]) => {
      const c = new FileChecksum("CRC32C");
      c.update(content);
      return {
        path,
        size: content.length,
        lastModified: "2026-12-01 21:48:33 GMT",
        algorithm: "CRC32C",
        checksum: c.digest(),
      };
    }),
    walRanges: ['{ "Timeline": 1, "Start-LSN": "0/700028", "End-LSN": "0/700100" }'],
  });
  const tar = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    tar.set(p, at);
    at += p.length;
  }
  return { tar, manifest };
}

async function storeBackup(walDir: string): Promise<number> {
  const { tar, manifest } = backupFiles();
  const store = await BackupStore.open(walDir);
  const w = await store.begin();
  for (const [name, bytes] of [["base.tar", tar], ["backup_manifest", manifest]] as const) {
    const f = await w.create(name);
    await f.write(bytes);
    await f.sync();
    f.close();
  }
  await w.commit({
    id: "00000001-0000000000700028",
    label: "synthetic",
    startLsn: 0x700028n,
    timeline: 1,
    endLsn: 0x700100n,
    endTimeline: 1,
    major: 15,
    systemId: 7711872075948452854n,
    startTime: "2026-12-01 21:48:33 UTC",
    storedAt: new Date(),
    source: "import",
    tablespaces: [],
    base: { bytes: tar.length, estimateKb: 4105 },
    manifest: { bytes: manifest.length, version: 1, algorithm: "CRC32C" },
  });
  return tar.length;
}

Deno.test({
  name: "BASE_BACKUP in-process: a whole answer, then a client gone mid-COPY, nothing leaked",
  sanitizeOps: true,
  sanitizeResources: true,
  fn: async () => {
    const dir = await copyTestdata();
    const tarBytes = await storeBackup(dir);
    const relay = await WalRelay.start({
      walDir: dir,
      port: 0,
      logger: silentLogger,
      watch: false,
    });
    try {
      const c = await PgClient.connect({ hostname: "127.0.0.1", port: relay.port, user: "repl" });
      await c.write(
        new MessageBuilder("Q").cstring(
          "BASE_BACKUP ( LABEL 'x',  PROGRESS,  WAL,  WAIT 0,  MANIFEST 'yes',  TARGET 'client')",
        ).finish(),
      );
      let data = 0;
      const types: string[] = [];
      let end: (string | null)[] | undefined;
      while (true) {
        const m = await c.nextRaw();
        if (m.type === "d") {
          if (m.body[0] === 0x64) data += m.body.length - 1;
          continue;
        }
        types.push(m.type);
        if (m.type === "D") end = parseDataRow(m.body);
        if (m.type === "Z") break;
      }
      assert.deepEqual(types, ["T", "D", "C", "T", "D", "C", "H", "c", "T", "D", "C", "C", "Z"]);
      assert.deepEqual(end, ["0/700100", "1"]);
      // The archive without tablespace_map (plain format) and with the WAL segment and its
      // .done, the history file and its .done; and the manifest.
      assert.ok(data > tarBytes - 512 + (1 << 20), `sent ${data}`);
      // The connection is usable afterwards.
      const [r] = await c.query("IDENTIFY_SYSTEM");
      assert.equal(r!.rows[0]![0], "7711872075948452854");
      await c.terminate();

      // A client that leaves in the middle of the COPY.
      const gone = await PgClient.connect({
        hostname: "127.0.0.1",
        port: relay.port,
        user: "repl",
      });
      await gone.write(new MessageBuilder("Q").cstring("BASE_BACKUP ( MAX_RATE 1024)").finish());
      while ((await gone.nextRaw()).type !== "d") { /* result sets */ }
      // pg_stat_replication shows it in state "backup", as PostgreSQL does.
      assert.deepEqual(relay.registry.list().map((s) => s.state), ["backup"]);
      gone.close();
      const backups = relay.backups!;
      const deadline = Date.now() + 10_000;
      while (backups.serving.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(backups.serving.size, 0);
      assert.deepEqual(
        { served: backups.totals.served, failed: backups.totals.failed },
        { served: 1, failed: 1 },
      );
    } finally {
      await relay.shutdown({ graceMs: 2000 });
      await Deno.remove(dir, { recursive: true });
    }
  },
});
