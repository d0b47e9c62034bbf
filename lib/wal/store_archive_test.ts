import assert from "node:assert/strict";
import { brotliCompressSync, constants, gzipSync } from "node:zlib";
import { WalStore } from "./store.ts";
import { openWalSource } from "../stream/source.ts";
import { concatBytes } from "../_io.ts";
import { pipeThroughTool, TOOLS } from "../archive/_test_utils.ts";
import { ArchiveFormatError } from "../archive/errors.ts";
import { pgErrorOf } from "../replication/wal_errors.ts";
import { TESTDATA } from "../../tests/_pg.ts";

const plainStore = await WalStore.open(TESTDATA);
const files = new Map<string, Uint8Array>();
for await (const e of Deno.readDir(TESTDATA)) {
  files.set(e.name, await Deno.readFile(`${TESTDATA}/${e.name}`));
}
const segments = [...files.keys()].filter((n) => /^[0-9A-F]{24}$/.test(n)).sort();
const PARTIAL = "000000010000000000000009.partial";
const HISTORY = "00000002.history";

type Compress = (b: Uint8Array) => Promise<Uint8Array>;
const tool = (key: string): Compress => (b) => pipeThroughTool(TOOLS[key]![0], TOOLS[key]![1], b);
const gzip: Compress = (b) => Promise.resolve(gzipSync(b));
const sha1 = async (b: Uint8Array): Promise<string> =>
  new Uint8Array(await crypto.subtle.digest("SHA-1", b as Uint8Array<ArrayBuffer>)).toHex();

/** Writes `tree` (relative path → bytes) under a new directory. */
async function tree(entries: [string, Uint8Array][]): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "walrelay-archive-" });
  for (const [rel, bytes] of entries) {
    const path = `${dir}/${rel}`;
    await Deno.mkdir(path.slice(0, path.lastIndexOf("/")), { recursive: true });
    await Deno.writeFile(path, bytes);
  }
  return dir;
}

const LAYOUTS: Record<string, () => Promise<[string, Uint8Array][]>> = {
  "pg_receivewal gzip": async () =>
    [
      ...await Promise.all(segments.map(async (n) => [`${n}.gz`, await gzip(files.get(n)!)])),
      // A stopped pg_receivewal's partial, rewritten over a longer earlier write: garbage follows.
      [
        "000000010000000000000009.gz.partial",
        concatBytes(await gzip(files.get(PARTIAL)!), new Uint8Array(300).fill(0x5a)),
      ],
      [HISTORY, files.get(HISTORY)!],
    ] as [string, Uint8Array][],
  "pg_receivewal lz4": async () =>
    [
      ...await Promise.all(
        segments.map(async (n) => [`${n}.lz4`, await tool("lz4_receivewal")(files.get(n)!)]),
      ),
      ["000000010000000000000009.lz4.partial", await tool("lz4_receivewal")(files.get(PARTIAL)!)],
      [HISTORY, files.get(HISTORY)!],
    ] as [string, Uint8Array][],
  "relay's own, plain tail and compressed segments": async () =>
    [
      ...await Promise.all(
        segments.map(async (n, i) =>
          i < 4 ? [`${n}.zst`, await tool("zstd")(files.get(n)!)] : [n, files.get(n)!]
        ),
      ),
      [PARTIAL, files.get(PARTIAL)!],
      [HISTORY, files.get(HISTORY)!],
    ] as [string, Uint8Array][],
  pgbackrest: async () =>
    [
      ["archive.info", new TextEncoder().encode("[db]\n")],
      ...await Promise.all(
        [...segments, PARTIAL].map(async (n, i) => {
          const plain = files.get(n)!;
          const ext = ["gz", "lz4", "zst", ""][i % 4]!;
          const body = ext === "gz"
            ? await gzip(plain)
            : ext === ""
            ? plain
            : await tool(ext === "zst" ? "zstd" : "lz4")(plain);
          const name = `${n}-${await sha1(plain)}${ext ? "." + ext : ""}`;
          return [`15-1/${n.slice(0, 16)}/${name}`, body];
        }),
      ),
      [`15-1/${HISTORY}`, files.get(HISTORY)!],
    ] as [string, Uint8Array][],
  barman: async () =>
    [
      ...await Promise.all(
        [...segments, PARTIAL].map(async (n, i) => {
          const plain = files.get(n)!;
          const body = i % 3 === 0
            ? await tool("bzip2")(plain)
            : i % 3 === 1
            ? gzipSync(plain)
            : plain;
          return [`wals/${n.slice(0, 16)}/${n}`, body];
        }),
      ),
      [`wals/${HISTORY}`, files.get(HISTORY)!],
      ["wals/xlog.db", new Uint8Array(10)],
    ] as [string, Uint8Array][],
  "wal-g": async () =>
    [
      ...await Promise.all(
        segments.map(async (n, i) =>
          i % 2
            ? [
              `wal_005/${n}.br`,
              brotliCompressSync(files.get(n)!, {
                params: { [constants.BROTLI_PARAM_QUALITY]: 4 },
              }),
            ]
            : [`wal_005/${n}.zst`, await tool("zstd")(files.get(n)!)]
        ),
      ),
      [`wal_005/${HISTORY}`, files.get(HISTORY)!],
    ] as [string, Uint8Array][],
};

/** Everything a timeline streams from `start`, as one byte string. */
async function streamAll(store: WalStore, tli: number, start: bigint): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  const ac = new AbortController();
  for await (const c of openWalSource(store, { tli, start, signal: ac.signal, wakeMs: 20 })) {
    parts.push(c.bytes.slice());
    if (c.start + BigInt(c.bytes.length) >= store.endOf(tli)) {
      if (tli === store.timeline) ac.abort();
    }
  }
  return concatBytes(...parts);
}

for (const [label, make] of Object.entries(LAYOUTS)) {
  Deno.test(`archive store: ${label} serves what the plain directory serves`, async () => {
    const dir = await tree(await make());
    try {
      const store = await WalStore.open(dir);
      assert.deepEqual(store.identity, plainStore.identity);
      assert.equal(store.timeline, plainStore.timeline);
      assert.deepEqual(store.timelines(), plainStore.timelines());
      assert.deepEqual(store.history, plainStore.history);
      assert.equal(store.endLsn, plainStore.endLsn);
      assert.deepEqual(await store.historyContent(2), files.get(HISTORY));
      for (const [tli, start] of [[1, 0x600000n], [2, 0x900000n]] as const) {
        const want = await streamAll(plainStore, tli, start);
        const got = await streamAll(store, tli, start);
        assert.equal(got.length, want.length, `timeline ${tli}`);
        assert.ok(got.every((b, i) => b === want[i]), `timeline ${tli}: same bytes`);
      }
      // A second pass decodes nothing again: every segment came from the cache.
      const decodes = store.archiveCache.decodes;
      await streamAll(store, 2, 0x900000n);
      assert.equal(store.archiveCache.decodes, decodes);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("archive store: concurrent senders share one decode per segment", async () => {
  const dir = await tree(await LAYOUTS["pg_receivewal gzip"]!());
  try {
    const store = await WalStore.open(dir);
    const before = store.archiveCache.decodes;
    const all = await Promise.all(Array.from({ length: 8 }, () => streamAll(store, 1, 0x600000n)));
    for (const a of all) assert.equal(a.length, all[0]!.length);
    // Timeline 1 reads 6, 7, 8 and 9 (timeline 2's file), and validation looks into A: five
    // files at most, whatever the number of senders.
    assert.ok(store.archiveCache.decodes - before <= 5, `${store.archiveCache.decodes - before}`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("archive store: a damaged compressed segment is XX001 naming the file", async () => {
  const entries = await LAYOUTS["pg_receivewal gzip"]!();
  const damaged = entries.find(([n]) => n === "000000010000000000000007.gz")!;
  damaged[1] = damaged[1].slice();
  const mid = damaged[1].length >> 1;
  damaged[1][mid] = damaged[1][mid]! ^ 0xff;
  const dir = await tree(entries);
  try {
    const store = await WalStore.open(dir);
    let error: unknown;
    try {
      await streamAll(store, 1, 0x600000n);
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof ArchiveFormatError, String(error));
    assert.match(error.message, /000000010000000000000007\.gz/);
    const pg = pgErrorOf(error) as { code: string; message: string };
    assert.equal(pg.code, "XX001");
    assert.match(pg.message, /000000010000000000000007\.gz.*gzip/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("archive store: a format without a decoder stops the opening, naming file and format", async () => {
  const dir = await tree([
    ...(await LAYOUTS["wal-g"]!()),
    ["wal_005/00000002000000000000000C.lzma", new Uint8Array([0x5d, 0, 0, 0x80, 0])],
  ]);
  try {
    await assert.rejects(
      WalStore.open(dir),
      (e) =>
        e instanceof ArchiveFormatError && /0000000C\.lzma/.test(e.message) &&
        /lzma/.test(e.message),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
