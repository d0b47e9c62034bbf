import assert from "node:assert/strict";
import { BodyReader } from "../pgwire/body_reader.ts";
import { parseDataRow, parseRowDescription } from "../pgwire/query_result.ts";
import { WalStore } from "../wal/store.ts";
import { buildManifest, parseManifest } from "./manifest.ts";
import { parseBaseBackupOptions } from "./options.ts";
import { type BackupProgress, type BackupSource, sendBaseBackup } from "./serve.ts";
import { baseBackupColumns } from "../replication/result_sets.ts";
import { buildTarHeader, tarEvents, type TarHeader } from "./tar.ts";
import { FileChecksum } from "./manifest.ts";

const enc = new TextEncoder();

function member(name: string, content: Uint8Array | null, typeflag = "0"): Uint8Array[] {
  const h: TarHeader = {
    name,
    mode: typeflag === "5" ? 0o700 : 0o600,
    uid: 101,
    gid: 103,
    size: content?.length ?? 0,
    mtime: 1764625713,
    typeflag,
    linkname: "",
  };
  const parts = [buildTarHeader(h)];
  if (content && content.length > 0) {
    parts.push(content, new Uint8Array((512 - (content.length % 512)) % 512));
  }
  return parts;
}

const LABEL = enc.encode(
  "START WAL LOCATION: 0/700028 (file 000000010000000000000007)\nCHECKPOINT LOCATION: 0/700060\n" +
    "BACKUP METHOD: streamed\nBACKUP FROM: primary\nSTART TIME: 2026-12-01 21:48:33 UTC\n" +
    "LABEL: pg_basebackup base backup\nSTART TIMELINE: 1\n",
);
const CONTROL = new Uint8Array(8192).fill(3);

/** A small base.tar as a 15 server sends it with TABLESPACE_MAP, and its manifest. */
function backup(): { tar: Uint8Array; manifest: Uint8Array } {
  const parts = [
    ...member("backup_label", LABEL),
    ...member("tablespace_map", new Uint8Array(0)),
    ...member("PG_VERSION", enc.encode("15\n")),
    ...member("pg_wal/", null, "5"),
    ...member("pg_tblspc/", null, "5"),
    ...member("global/", null, "5"),
    ...member("global/pg_control", CONTROL),
    new Uint8Array(1024),
  ];
  const tar = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    tar.set(p, at);
    at += p.length;
  }
  const file = (path: string, content: Uint8Array) => {
    const c = new FileChecksum("CRC32C");
    c.update(content);
    return {
      path,
      size: content.length,
      lastModified: "2026-12-01 21:48:33 GMT",
      algorithm: "CRC32C" as const,
      checksum: c.digest(),
    };
  };
  const manifest = buildManifest({
    version: 1,
    head: ['{ "PostgreSQL-Backup-Manifest-Version": 1,'],
    files: [
      file("backup_label", LABEL),
      file("tablespace_map", new Uint8Array(0)),
      file("PG_VERSION", enc.encode("15\n")),
      file("global/pg_control", CONTROL),
    ],
    walRanges: ['{ "Timeline": 1, "Start-LSN": "0/700028", "End-LSN": "0/700100" }'],
  });
  return { tar, manifest };
}

/** Runs a BASE_BACKUP with these options against the testdata store; returns the messages. */
async function serve(options: string): Promise<{ type: string; body: Uint8Array }[]> {
  const { tar, manifest } = backup();
  const source: BackupSource = {
    id: "test",
    start: () =>
      Promise.resolve({
        startLsn: 0x700028n,
        timeline: 1,
        tablespaces: [],
        baseEstimateKb: 9,
        manifestAlgorithm: "CRC32C",
      }),
    archive: () => ReadableStream.from([tar]),
    manifest: () => Promise.resolve(manifest),
    end: () => Promise.resolve({ endLsn: 0x700100n, endTimeline: 1 }),
  };
  const wal = await WalStore.open("testdata/wal");
  const out: Uint8Array[] = [];
  const progress: BackupProgress = {
    backupId: "test",
    pid: 1,
    phase: "waiting for checkpoint to finish",
    bytesDone: 0,
    bytesTotal: undefined,
    started: new Date(),
  };
  const { parseCommand } = await import("../replication/command.ts");
  const cmd = parseCommand(`BASE_BACKUP (${options})`);
  assert.equal(cmd.kind, "BASE_BACKUP");
  await sendBaseBackup({
    client: { send: (...m) => Promise.resolve(void out.push(...m.map((x) => x.slice()))) },
    wal,
    source,
    options: parseBaseBackupOptions(cmd.kind === "BASE_BACKUP" ? cmd.options : []),
    progress,
    walTimeoutMs: 1000,
  });
  const all = new Uint8Array(out.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of out) {
    all.set(p, at);
    at += p.length;
  }
  const msgs: { type: string; body: Uint8Array }[] = [];
  for (let i = 0; i < all.length;) {
    const len = new DataView(all.buffer, i + 1).getInt32(0);
    msgs.push({ type: String.fromCharCode(all[i]!), body: all.subarray(i + 5, i + 1 + len) });
    i += 1 + len;
  }
  return msgs;
}

Deno.test("BASE_BACKUP framing as a 15 server sends it: result sets, one COPY, the end", async () => {
  const msgs = await serve(
    "LABEL 'x',  PROGRESS,  WAIT 0,  TABLESPACE_MAP,  MANIFEST 'yes',  TARGET 'client'",
  );
  const kinds = msgs.map((m) => m.type === "d" ? `d${String.fromCharCode(m.body[0]!)}` : m.type);
  assert.deepEqual(kinds.slice(0, 8), ["T", "D", "C", "T", "D", "C", "H", "dn"]);
  assert.deepEqual(kinds.slice(-10), ["dd", "dp", "dm", "dd", "c", "T", "D", "C", "C", "Z"]);
  // 15: typmod 0 and the int8 tli with typlen -1.
  assert.deepEqual(parseRowDescription(msgs[0]!.body).map((f) => [f.typeOid, f.typeMod]), [
    [25, 0],
    [20, 0],
  ]);
  assert.deepEqual(parseDataRow(msgs[1]!.body), ["0/700028", "1"]);
  assert.deepEqual(parseDataRow(msgs[4]!.body), [null, null, "9"]);
  assert.equal(new BodyReader(msgs[2]!.body).cstring(), "SELECT");
  assert.deepEqual([...msgs[6]!.body], [0, 0, 0]);
  assert.deepEqual([...msgs[7]!.body], [...enc.encode("nbase.tar\0\0")]);
  assert.deepEqual(parseDataRow(msgs.at(-4)!.body), ["0/700100", "1"]);
  assert.equal(new BodyReader(msgs.at(-2)!.body).cstring(), "BASE_BACKUP");
  // The archive exactly as stored, and the manifest too: nothing was asked to change.
  const { tar, manifest } = backup();
  const dm = kinds.indexOf("dm");
  const archive = msgs.slice(8, dm).filter((m) => m.body[0] === 0x64).map((m) => m.body.slice(1));
  assert.deepEqual(new Uint8Array(await new Blob(archive).arrayBuffer()), tar);
  const sent = msgs.slice(dm + 1, -6).map((m) => m.body.slice(1));
  assert.deepEqual(new Uint8Array(await new Blob(sent).arrayBuffer()), manifest);
  // 'p' counts the archive, not the manifest.
  const p = msgs[dm - 1]!.body;
  assert.equal(new DataView(p.buffer, p.byteOffset + 1).getBigInt64(0), BigInt(tar.length));
});

Deno.test("BASE_BACKUP plain format: no tablespace_map; WAL appended and listed as PostgreSQL lists it", async () => {
  const msgs = await serve(
    "LABEL 'x',  WAL,  WAIT 0,  MANIFEST 'yes',  MANIFEST_CHECKSUMS 'SHA256'",
  );
  const kinds = msgs.map((m) => m.type === "d" ? `d${String.fromCharCode(m.body[0]!)}` : m.type);
  // Without PROGRESS the size is NULL; 'p' still goes out.
  assert.deepEqual(parseDataRow(msgs[4]!.body), [null, null, null]);
  const dm = kinds.indexOf("dm");
  const archive = msgs.slice(8, dm).filter((m) => m.body[0] === 0x64).map((m) => m.body.slice(1));
  const names: string[] = [];
  for await (const ev of tarEvents(new Blob(archive).stream())) {
    if (ev.kind === "member") names.push(ev.header.name);
  }
  assert.ok(!names.includes("tablespace_map"));
  // The backup's WAL segment, then its .done; every history file after.
  assert.deepEqual(names.slice(-4), [
    "pg_wal/000000010000000000000007",
    "pg_wal/archive_status/000000010000000000000007.done",
    "pg_wal/00000002.history",
    "pg_wal/archive_status/00000002.history.done",
  ]);
  const sent = msgs.slice(dm + 1, -6).map((m) => m.body.slice(1));
  const m = parseManifest(new Uint8Array(await new Blob(sent).arrayBuffer()));
  assert.deepEqual(m.files.map((f) => f.path), [
    "backup_label",
    "PG_VERSION",
    "global/pg_control",
    "pg_wal/archive_status/000000010000000000000007.done",
    "pg_wal/00000002.history",
    "pg_wal/archive_status/00000002.history.done",
  ]);
  assert.ok(m.files.every((f) => f.algorithm === "SHA256" && f.checksum.length === 64));
});

Deno.test("BASE_BACKUP result set columns per major", () => {
  const c15 = baseBackupColumns(15);
  const c17 = baseBackupColumns(17);
  assert.deepEqual(c15.tablespaces.map((f) => [f.typeOid, f.typeLen, f.typeMod]), [
    [26, 4, 0],
    [25, -1, 0],
    [20, 8, 0],
  ]);
  assert.deepEqual(c17.position.map((f) => [f.typeOid, f.typeLen, f.typeMod]), [
    [25, -1, -1],
    [20, 8, -1],
  ]);
});
