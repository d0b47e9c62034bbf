// Segment 8 of testdata ends in an XLOG_SWITCH at 0x27258 of its 1 MB: cuts below that leave a
// real end of valid WAL inside the segment; with the switch present the whole segment is valid.
//
// The valid end of a directory that is not a list of complete files: a zero-padded .partial,
// recycled and preallocated files above the end, damaged records, a .partial that grows. The
// store must stop exactly where PostgreSQL's reader (pg_waldump) stops, and nothing beyond it may
// reach a client.

import assert from "node:assert/strict";
import { WalStore } from "../lib/wal/store.ts";
import { openWalSource } from "../lib/stream/source.ts";
import { formatLsn, type Lsn } from "../lib/wal/lsn.ts";
import { waldump } from "../lib/wal/_waldump_oracle.ts";
import { tempDir, TESTDATA } from "./_pg.ts";

const SEG = 1024 * 1024;
const S6 = "000000010000000000000006";
const S7 = "000000010000000000000007";
const S8 = "000000010000000000000008";

/**
 * Where pg_waldump stops reading timeline 1 from 0/700000, and why. It does not read `.partial`
 * files, so it reads a copy of the directory with plain names.
 */
async function waldumpEnd(dir: string): Promise<{ end: Lsn; message: string }> {
  await using copy = await tempDir("walrelay_sv_oracle_");
  for await (const e of Deno.readDir(dir)) {
    await Deno.copyFile(`${dir}/${e.name}`, `${copy.path}/${e.name.replace(/\.partial$/, "")}`);
  }
  // --end at the segment end: otherwise pg_waldump waits for a next segment after XLOG_SWITCH.
  const dump = await waldump(copy.path, 0x700000n, 0x900000n, ["-t", "1"]);
  return { end: dump.end, message: dump.error ?? dump.stderr.trim() };
}

async function sentBytes(store: WalStore, start: Lsn): Promise<Lsn> {
  const parts = await Array.fromAsync(
    openWalSource(store, { tli: 1, start, stopAt: () => store.endLsn }),
  );
  return start + BigInt(parts.reduce((n, c) => n + c.bytes.length, 0));
}

async function setup(dir: string, names: string[]): Promise<void> {
  for (const n of names) await Deno.copyFile(`${TESTDATA}/${n}`, `${dir}/${n}`);
}

Deno.test("store: a zero-padded .partial ends where pg_waldump ends", async () => {
  await using dir = await tempDir("walrelay_sv_");
  await setup(dir.path, [S6, S7]);
  // pg_receivewal's .partial: the real bytes up to some point, zeros to the segment size.
  const real = await Deno.readFile(`${TESTDATA}/${S8}`);
  const partial = new Uint8Array(SEG);
  partial.set(real.subarray(0, 100_000));
  await Deno.writeFile(`${dir.path}/${S8}.partial`, partial);
  const oracle = await waldumpEnd(dir.path);
  const store = await WalStore.open(dir.path);
  assert.equal(formatLsn(store.endLsn), formatLsn(oracle.end), oracle.message);
  assert.ok(store.endLsn > 0x800000n && store.endLsn <= 0x800000n + 100_000n);
  assert.equal(await sentBytes(store, 0x600000n), store.endLsn, "nothing beyond reaches a client");
});

Deno.test("store: recycled and preallocated files above the end are never trusted", async () => {
  for (const kind of ["recycled", "zeros"] as const) {
    await using dir = await tempDir("walrelay_sv_");
    await setup(dir.path, [S6, S7]);
    // What pg_wal holds past its end: an old segment renamed for reuse, or a zero-filled file.
    if (kind === "recycled") await Deno.copyFile(`${TESTDATA}/${S6}`, `${dir.path}/${S8}`);
    else await Deno.writeFile(`${dir.path}/${S8}`, new Uint8Array(SEG));
    const oracle = await waldumpEnd(dir.path);
    const store = await WalStore.open(dir.path);
    assert.equal(formatLsn(store.endLsn), formatLsn(oracle.end), `${kind}: ${oracle.message}`);
    assert.ok(store.endLsn <= 0x800000n, `${kind}: never into the stale file`);
    assert.equal(await sentBytes(store, 0x600000n), store.endLsn);
  }
});

Deno.test("store: a damaged record in the tail stops the end at that record", async () => {
  await using dir = await tempDir("walrelay_sv_");
  await setup(dir.path, [S6, S7]);
  const bytes = await Deno.readFile(`${TESTDATA}/${S8}`);
  bytes[60_000] = bytes[60_000]! ^ 0xff; // inside some record
  const partial = new Uint8Array(SEG);
  partial.set(bytes.subarray(0, 150_000));
  await Deno.writeFile(`${dir.path}/${S8}.partial`, partial);
  const oracle = await waldumpEnd(dir.path);
  const store = await WalStore.open(dir.path);
  assert.equal(formatLsn(store.endLsn), formatLsn(oracle.end), oracle.message);
  assert.ok(
    store.endLsn > 0x800000n && store.endLsn <= 0x800000n + 60_000n,
    "stops at the damaged record",
  );
});

Deno.test("store: a growing .partial advances the end record by record, incrementally", async () => {
  await using dir = await tempDir("walrelay_sv_");
  await setup(dir.path, [S6, S7]);
  const real = await Deno.readFile(`${TESTDATA}/${S8}`);
  const file = await Deno.open(`${dir.path}/${S8}.partial`, { write: true, create: true });
  await file.truncate(SEG);
  const store = await WalStore.open(dir.path);
  // A zero file has no valid header: the end is the last whole record of segment 7.
  assert.equal(formatLsn(store.endLsn), formatLsn((await waldumpEnd(dir.path)).end));
  assert.ok(store.endLsn < 0x800000n);
  const ac = new AbortController();
  const start = store.endLsn;
  const reader = openWalSource(store, { tli: 1, start, signal: ac.signal }).getReader();
  let received = start;
  const ends: Lsn[] = [];
  try {
    for (const upto of [5_000, 40_000, 100_000, 150_000, SEG]) {
      await file.seek(0, Deno.SeekMode.Start);
      await file.write(real.subarray(0, upto));
      await store.refresh();
      const oracle = await waldumpEnd(dir.path);
      assert.equal(formatLsn(store.endLsn), formatLsn(oracle.end), `after ${upto} bytes`);
      ends.push(store.endLsn);
      while (received < store.endLsn) {
        const { value } = await reader.read();
        assert.equal(value!.start, received, "contiguous");
        received += BigInt(value!.bytes.length);
      }
      assert.equal(received, store.endLsn, "the client has exactly the valid WAL");
    }
    assert.deepEqual(ends, [...ends].sort((a, b) => (a < b ? -1 : 1)), "never moves back");
  } finally {
    file.close();
    ac.abort();
    await reader.cancel();
  }
});

Deno.test("store: an archive copy in progress ends where its bytes end, even after XLOG_SWITCH", async () => {
  await using dir = await tempDir("walrelay_sv_");
  await setup(dir.path, [S6, S7]);
  // cp of segment 8 half done: past its XLOG_SWITCH (at 0x27258) but short of the segment end.
  // The switch makes the rest of the segment valid padding, which this file does not hold yet.
  const real = await Deno.readFile(`${TESTDATA}/${S8}`);
  await Deno.writeFile(`${dir.path}/${S8}`, real.subarray(0, 200_000));
  const store = await WalStore.open(dir.path);
  assert.ok(store.endLsn <= 0x800000n + 200_000n, `end ${formatLsn(store.endLsn)} past the file`);
  assert.equal(await sentBytes(store, 0x600000n), store.endLsn, "every byte up to it is readable");
  // The copy completes: the whole segment.
  await Deno.writeFile(`${dir.path}/${S8}`, real);
  await store.refresh();
  assert.equal(store.endLsn, 0x900000n);
});
