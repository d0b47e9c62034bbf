import assert from "node:assert/strict";
import { ArchiveLayoutError } from "./errors.ts";
import { scanArchive } from "./layout.ts";
import { readArchivedFile } from "./read_segment.ts";
import { isPrefix, pipeThroughTool, SAMPLE_SEGMENT } from "./_test_utils.ts";

const plain = await Deno.readFile(SAMPLE_SEGMENT);
const SEG = "000000010000000000000006";
const HIST = "00000002.history";
const history = new TextEncoder().encode("1\t0/9000000\tno recovery target specified\n");

async function tree(files: Record<string, Uint8Array | null>): Promise<string> {
  const dir = await Deno.makeTempDir();
  for (const [path, bytes] of Object.entries(files)) {
    const full = `${dir}/${path}`;
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true });
    if (bytes === null) await Deno.mkdir(full, { recursive: true });
    else await Deno.writeFile(full, bytes);
  }
  return dir;
}

async function sha1(b: Uint8Array): Promise<string> {
  return new Uint8Array(await crypto.subtle.digest("SHA-1", b as Uint8Array<ArrayBuffer>)).toHex();
}

async function readsBack(dir: string, name = SEG): Promise<void> {
  const { entries } = await scanArchive(dir);
  const e = entries.find((e) => e.name === name)!;
  const r = await readArchivedFile(e, { segmentSize: plain.length });
  assert.ok(r.data.length === plain.length && isPrefix(r.data, plain));
}

Deno.test("layout: plain directory", async () => {
  const dir = await tree({
    [SEG]: plain,
    [`${SEG.slice(0, 23)}7.partial`]: plain,
    [HIST]: history,
  });
  const l = await scanArchive(dir);
  assert.equal(l.layout, "plain");
  assert.deepEqual(l.entries.map((e) => e.name), [
    SEG,
    "000000010000000000000007.partial",
    HIST,
  ]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("layout: pg_receivewal --compress, with .gz.partial and .lz4.partial", async () => {
  const gz = await pipeThroughTool("gzip", ["-c"], plain);
  const dir = await tree({
    [`${SEG}.gz`]: gz,
    "000000010000000000000007.gz.partial": new Uint8Array(0),
    [HIST]: history,
  });
  const l = await scanArchive(dir);
  assert.equal(l.layout, "pg_receivewal");
  assert.deepEqual(l.entries.map((e) => [e.name, e.format]), [
    [SEG, "gzip"],
    ["000000010000000000000007.partial", "gzip"],
    [HIST, "plain"],
  ]);
  await readsBack(dir);
  const partial = await readArchivedFile(l.entries[1]!, { segmentSize: plain.length });
  assert.deepEqual([partial.data.length, partial.complete], [0, false]);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("layout: pgBackRest stanza archive, newest archive id, SHA-1 from the name", async () => {
  const zst = await pipeThroughTool("zstd", ["-q", "-c"], plain);
  const sum = await sha1(plain);
  const dir = await tree({
    "archive.info": new Uint8Array(0),
    "archive.info.copy": new Uint8Array(0),
    [`14-1/0000000100000000/000000010000000000000001-${"0".repeat(40)}.gz`]: new Uint8Array(1),
    [`15-2/0000000100000000/${SEG}-${sum}.zst`]: zst,
    [`15-2/0000000100000000/${SEG}.00000028.backup`]: new Uint8Array(1),
    [`15-2/${HIST}`]: history,
  });
  const l = await scanArchive(dir);
  assert.equal(l.layout, "pgbackrest");
  assert.equal(l.walDir, `${dir}/15-2`);
  assert.deepEqual(l.entries.map((e) => [e.name, e.format, e.expectedSha1]), [
    [SEG, "zstd", sum],
    [HIST, "plain", undefined],
  ]);
  await readsBack(dir);
  const old = await scanArchive(dir, { archiveId: "14-1" });
  assert.deepEqual(old.entries.map((e) => e.name), ["000000010000000000000001"]);
  await assert.rejects(scanArchive(dir, { archiveId: "16-3" }), ArchiveLayoutError);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("layout: Barman server directory and its wals/, compression by magic, streaming/ beside", async () => {
  const bz2 = await pipeThroughTool("bzip2", ["-c"], plain);
  const files = {
    [`wals/0000000100000000/${SEG}`]: bz2,
    [`wals/0000000100000000/000000010000000000000007`]: plain,
    [`wals/${HIST}`]: history,
    "wals/xlog.db": new Uint8Array(0),
    "base": null,
    // receive-wal's: a copy archive-wal has not removed yet, the newest segment, the one it
    // writes, and pg_receivewal's temporary file.
    "streaming/000000010000000000000007": new Uint8Array(1),
    "streaming/000000010000000000000008": plain,
    "streaming/000000010000000000000009.partial": plain,
    "streaming/00000002.history.tmp": history,
  };
  const dir = await tree(files);
  for (const d of [dir, `${dir}/wals`]) {
    const l = await scanArchive(d);
    assert.equal(l.layout, "barman");
    assert.equal(l.walDir, `${dir}/wals`);
    assert.deepEqual(l.entries.map((e) => [e.name, e.path.slice(dir.length + 1)]), [
      [SEG, `wals/0000000100000000/${SEG}`],
      ["000000010000000000000007", "wals/0000000100000000/000000010000000000000007"],
      ["000000010000000000000008", "streaming/000000010000000000000008"],
      ["000000010000000000000009.partial", "streaming/000000010000000000000009.partial"],
      [HIST, `wals/${HIST}`],
    ]);
    assert.ok(l.entries.every((e) => e.format === undefined));
  }
  await readsBack(dir);
  await readsBack(dir, "000000010000000000000007");
  await readsBack(dir, "000000010000000000000008");
  // Without streaming/, only wals/.
  await Deno.remove(`${dir}/streaming`, { recursive: true });
  assert.equal((await scanArchive(dir)).entries.length, 3);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("layout: WAL-G file storage root and its wal_005/", async () => {
  const lz4 = await pipeThroughTool("lz4", ["-q", "-c"], plain);
  const dir = await tree({
    [`wal_005/${SEG}.lz4`]: lz4,
    [`wal_005/000000010000000000000007.br`]: new Uint8Array(1),
    [`wal_005/${HIST}.lz4`]: await pipeThroughTool("lz4", ["-q", "-c"], history),
    "basebackups_005": null,
  });
  for (const d of [dir, `${dir}/wal_005`]) {
    const l = await scanArchive(d);
    assert.equal(l.layout, "wal-g");
    assert.deepEqual(l.entries.map((e) => [e.name, e.format]), [
      [SEG, "lz4"],
      ["000000010000000000000007", "brotli"],
      [HIST, "lz4"],
    ]);
  }
  await readsBack(dir);
  const { entries } = await scanArchive(dir);
  const h = await readArchivedFile(entries[2]!);
  assert.deepEqual(h.data, history);
  await Deno.remove(dir, { recursive: true });
});

Deno.test("layout: mixed layouts in one directory are an error naming both", async () => {
  const dir = await tree({ [SEG]: plain, "000000010000000000000007.gz": new Uint8Array(1) });
  await assert.rejects(
    scanArchive(dir),
    (e: unknown) =>
      e instanceof ArchiveLayoutError && /plain/.test(e.message) && /pg_receivewal/.test(e.message),
  );
  await Deno.remove(dir, { recursive: true });
  const dir2 = await tree({ "wals": null, "15-1": null });
  await assert.rejects(scanArchive(dir2), /barman.*pgbackrest|pgbackrest.*barman/);
  await Deno.remove(dir2, { recursive: true });
});

Deno.test("layout: an empty directory is plain and empty", async () => {
  const dir = await Deno.makeTempDir();
  assert.deepEqual(await scanArchive(dir), { layout: "plain", walDir: dir, entries: [] });
  await Deno.remove(dir);
});
