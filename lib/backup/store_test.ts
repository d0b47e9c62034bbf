import assert from "node:assert/strict";
import { join } from "node:path";
import { BACKUP_DIR, backupId, type BackupInfo, BackupStore } from "./store.ts";

function info(startLsn: bigint): BackupInfo {
  return {
    id: backupId(1, startLsn),
    label: "t",
    startLsn,
    timeline: 1,
    endLsn: startLsn + 0x100n,
    endTimeline: 1,
    major: 15,
    systemId: 7714455572339687036n,
    startTime: "2026-12-01 21:48:33 UTC",
    storedAt: new Date(0),
    source: "import",
    tablespaces: [],
    base: { bytes: 1024, estimateKb: 0 },
    manifest: { bytes: 10, version: 1, algorithm: "CRC32C" },
  };
}

async function store(s: BackupStore, startLsn: bigint): Promise<void> {
  const w = await s.begin();
  const f = await w.create("base.tar");
  await f.write(new Uint8Array(1024));
  await f.sync();
  f.close();
  await w.commit(info(startLsn));
}

Deno.test("backup store: committed backups are listed, and read back after a restart", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const s = await BackupStore.open(dir);
    assert.deepEqual(s.list(), []);
    await store(s, 0x5000028n);
    await store(s, 0x3000028n);
    assert.deepEqual(s.list().map((b) => b.id), [
      "00000001-0000000003000028",
      "00000001-0000000005000028",
    ]);
    assert.equal(s.oldestStartLsn(), 0x3000028n);
    const again = await BackupStore.open(dir);
    assert.deepEqual(again.list(), s.list());
    assert.equal(again.newest()?.systemId, 7714455572339687036n);
    await assert.rejects(store(s, 0x5000028n), /already stored/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("backup store: a half-written backup is never listed and is removed at startup", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const s = await BackupStore.open(dir);
    const w = await s.begin();
    (await w.create("base.tar")).close();
    assert.deepEqual(s.list(), []);
    // A process beside the relay leaves it alone.
    await BackupStore.open(dir, { cleanup: false });
    assert.equal((await Array.fromAsync(Deno.readDir(join(dir, BACKUP_DIR)))).length, 1);
    const logged: string[] = [];
    const again = await BackupStore.open(dir, { log: (m) => logged.push(m) });
    assert.deepEqual(again.list(), []);
    assert.equal(logged.length, 1);
    assert.match(logged[0]!, /removing incomplete base backup/);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(join(dir, BACKUP_DIR))), []);
    // A writer aborted removes its directory at once.
    const w2 = await s.begin();
    await w2.abort();
    assert.deepEqual(await Array.fromAsync(Deno.readDir(join(dir, BACKUP_DIR))), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("backup store: pruning keeps the newest, and any in use", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const s = await BackupStore.open(dir);
    for (const lsn of [0x1000028n, 0x2000028n, 0x3000028n, 0x4000028n]) await store(s, lsn);
    const oldest = backupId(1, 0x1000028n);
    assert.deepEqual(await s.prune(2, new Set([oldest])), [backupId(1, 0x2000028n)]);
    assert.deepEqual(s.list().map((b) => b.startLsn), [0x1000028n, 0x3000028n, 0x4000028n]);
    assert.deepEqual(await s.prune(2), [oldest]);
    assert.deepEqual((await BackupStore.open(dir)).list().length, 2);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("backup store: a directory never written to stays untouched", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.deepEqual((await BackupStore.open(dir)).list(), []);
    assert.deepEqual(await Array.fromAsync(Deno.readDir(dir)), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("backup store: refresh sees backups stored by another process, and their removal", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const running = await BackupStore.open(dir);
    const other = await BackupStore.open(dir);
    await store(other, 0x5000028n);
    assert.deepEqual(running.list(), []);
    await running.refresh();
    assert.deepEqual(running.list().map((b) => b.startLsn), [0x5000028n]);
    await other.remove(backupId(1, 0x5000028n));
    await running.refresh();
    assert.deepEqual(running.list(), []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
