// The durable writer and the directory scan that resumes it, on the bundled real WAL
// (testdata/wal: 1 MB segments, timeline 1 → 2 at 0/997C58).

import assert from "node:assert/strict";
import { join } from "node:path";
import { DurableWriter, scanLocalWal } from "./durable_writer.ts";
import { WalFileError } from "./wal_file_error.ts";
import { listDir } from "../../tests/_relay_util.ts";

const WAL = new URL("../../testdata/wal", import.meta.url).pathname;
const SEG = 1 << 20;

/** A sink that records what is announced, as the store would receive it. */
function recordingSink() {
  const notes: { tli: number; start: bigint; len: number }[] = [];
  return {
    notes,
    endLsn: 0n,
    timeline: 1,
    noteDurable(tli: number, start: bigint, bytes: Uint8Array) {
      notes.push({ tli, start, len: bytes.length });
      this.endLsn = start + BigInt(bytes.length);
      this.timeline = tli;
    },
    refresh: () => Promise.resolve(true),
  };
}

Deno.test("durable writer: segments as pg_receivewal writes them, announced only after flush", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const seg6 = await Deno.readFile(join(WAL, "000000010000000000000006"));
    const seg7 = await Deno.readFile(join(WAL, "000000010000000000000007"));
    const w = await DurableWriter.open(dir, { segmentSize: SEG });
    const sink = recordingSink();
    sink.endLsn = 0x600000n;
    w.position(1, 0x600000n);
    await w.attach(sink);
    // Chunks crossing the segment boundary, as XLogData may.
    const all = new Uint8Array(2 * SEG);
    all.set(seg6);
    all.set(seg7, SEG);
    const cut = [0, 100_000, SEG - 4096, SEG + 8192, SEG + 300_000];
    for (let i = 0; i < cut.length; i++) {
      const from = cut[i]!;
      const to = cut[i + 1] ?? SEG + 300_000;
      if (to <= from) continue;
      await w.write(1, 0x600000n + BigInt(from), all.slice(from, to));
      if (i === 1) {
        // Written, not yet synced: nothing announced, the file is a full-size .partial.
        assert.equal(sink.notes.length, 0);
        assert.equal((await Deno.stat(`${dir}/000000010000000000000006.partial`)).size, SEG);
      }
    }
    await w.flush();
    assert.equal(w.flushedLsn, 0x600000n + BigInt(SEG + 300_000));
    assert.equal(sink.endLsn, w.flushedLsn);
    assert.deepEqual(await Deno.readFile(`${dir}/000000010000000000000006`), seg6);
    const partial = await Deno.readFile(`${dir}/000000010000000000000007.partial`);
    assert.equal(partial.length, SEG);
    assert.deepEqual(partial.subarray(0, 300_000), seg7.subarray(0, 300_000));
    assert.ok(partial.subarray(300_000).every((b) => b === 0));
    // Four writes, the one across the segment boundary cut in two; two segments synced at once.
    assert.equal(w.stats.writes, 5);
    assert.equal(w.stats.syncs, 2);
    assert.ok(w.stats.syncSeconds > 0 && w.stats.writeSeconds > 0);
    // A write that does not continue is refused, as pg_receivewal refuses it.
    await assert.rejects(w.write(1, 0x600000n, new Uint8Array(8)), /expected/);
    await w.close();

    // Restart: resume at the .partial's segment start; its valid prefix is what was durable.
    const local = await scanLocalWal(dir, SEG);
    assert.equal(local.timeline, 1);
    assert.equal(local.resumeLsn, 0x700000n);
    assert.ok(local.durableEnd! > 0x700000n && local.durableEnd! <= 0x700000n + 300_000n);
    assert.equal(local.systemId, 7711872075948452854n);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scanLocalWal: a garbage-free zeroed .partial counts for nothing; timelines and histories", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(join(WAL, "000000010000000000000006"), `${dir}/000000010000000000000006`);
    await Deno.writeFile(`${dir}/000000010000000000000007.partial`, new Uint8Array(SEG));
    let local = await scanLocalWal(dir, SEG);
    assert.deepEqual([local.resumeLsn, local.durableEnd], [0x700000n, 0x700000n]);

    // A history file alone: resume at the switch point's segment on the new timeline.
    await Deno.copyFile(join(WAL, "00000002.history"), `${dir}/00000002.history`);
    local = await scanLocalWal(dir, SEG);
    assert.equal(local.timeline, 2);
    assert.equal(local.resumeLsn, 0x900000n);
    assert.equal(local.durableEnd, 0x997C58n);

    // The other segment size is caught from the long page header.
    await assert.rejects(scanLocalWal(dir, 2 * SEG), /segment size/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("scanLocalWal: a crash between completing a segment and its rename resumes at that segment, not the next", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.copyFile(join(WAL, "00000002.history"), `${dir}/00000002.history`);
    for (const name of ["000000020000000000000009", "00000002000000000000000A"]) {
      await Deno.copyFile(join(WAL, name), `${dir}/${name}`);
    }
    // 0B complete but not yet renamed; 0C opened, zero-filled and synced, as write() leaves them.
    await Deno.copyFile(
      join(WAL, "00000002000000000000000B"),
      `${dir}/00000002000000000000000B.partial`,
    );
    await Deno.writeFile(`${dir}/00000002000000000000000C.partial`, new Uint8Array(SEG));
    const local = await scanLocalWal(dir, SEG);
    assert.equal(local.timeline, 2);
    assert.equal(local.resumeLsn, 0xB00000n);
    assert.equal(local.durableEnd, 0xC00000n);

    // The upstream sends 0B again from its start: it is completed and renamed; 0C stays next.
    const w = await DurableWriter.open(dir, { segmentSize: SEG });
    w.position(2, local.resumeLsn!, local.durableEnd);
    await w.write(2, 0xB00000n, await Deno.readFile(join(WAL, "00000002000000000000000B")));
    await w.flush();
    await w.close();
    assert.deepEqual((await listDir(dir)).slice(-2), [
      "00000002000000000000000B",
      "00000002000000000000000C.partial",
    ]);
    assert.equal((await scanLocalWal(dir, SEG)).resumeLsn, 0xC00000n);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("durable writer: a timeline switch writes the history and the new segment's prefix first", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const seg9 = await Deno.readFile(join(WAL, "000000010000000000000009.partial"));
    const history = await Deno.readFile(join(WAL, "00000002.history"));
    const w = await DurableWriter.open(dir, { segmentSize: SEG });
    w.position(1, 0x900000n);
    await w.write(1, 0x900000n, seg9.slice(0, 0x97C58 + 8));
    await w.switchTimeline(2, 0x997C58n, history);
    assert.deepEqual(await Deno.readFile(`${dir}/00000002.history`), history);
    const tli2 = await Deno.readFile(`${dir}/000000020000000000000009.partial`);
    assert.deepEqual(tli2.subarray(0, 0x97C58), seg9.subarray(0, 0x97C58));
    // The old timeline's segment stays a .partial, as pg_receivewal leaves it.
    await Deno.stat(`${dir}/000000010000000000000009.partial`);
    assert.equal(w.timeline, 2);
    assert.equal(w.writtenLsn, 0x900000n);
    await w.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("durable writer: after a failed flush nothing unsynced counts, and it is written again", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const seg6 = await Deno.readFile(join(WAL, "000000010000000000000006"));
    const w = await DurableWriter.open(dir, { segmentSize: SEG });
    const sink = recordingSink();
    sink.endLsn = 0x600000n;
    w.position(1, 0x600000n);
    await w.attach(sink);
    await w.write(1, 0x600000n, seg6.slice(0, 100_000));
    await w.flush();
    // The rest completes the segment, but a directory in the way of its final name makes the
    // rename fail.
    await w.write(1, 0x600000n + 100_000n, seg6.slice(100_000));
    await Deno.mkdir(`${dir}/000000010000000000000006/x`, { recursive: true });
    await assert.rejects(
      w.flush(),
      (e) =>
        e instanceof WalFileError && e.operation === "rename" &&
        /^could not rename file ".*000000010000000000000006\.partial" to ".*0006": Is a directory/
          .test(e.message),
    );
    // Nothing past the last good flush is durable, announced, or accepted as a continuation.
    assert.equal(w.flushedLsn, 0x600000n + 100_000n);
    assert.equal(w.writtenLsn, w.flushedLsn);
    assert.equal(sink.endLsn, 0x600000n + 100_000n);
    await assert.rejects(w.write(1, w.writtenLsn, seg6.slice(100_000)), WalFileError);

    // Positioned at the durable end again (as the receiver does on reconnecting), the WAL is
    // written anew and this time completes the segment.
    await Deno.remove(`${dir}/000000010000000000000006`, { recursive: true });
    w.position(1, w.flushedLsn);
    await w.write(1, w.writtenLsn, seg6.slice(100_000));
    await w.flush();
    assert.equal(sink.endLsn, 0x700000n);
    assert.deepEqual(await Deno.readFile(`${dir}/000000010000000000000006`), seg6);
    await w.close();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
