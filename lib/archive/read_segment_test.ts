import assert from "node:assert/strict";
import { ArchiveFormatError } from "./errors.ts";
import { archivedFormat, readArchivedFile } from "./read_segment.ts";
import { pipeThroughTool, SAMPLE_SEGMENT } from "./_test_utils.ts";
import { LZ4_DIRECT_RATIO } from "./_decode_into.ts";

const plain = await Deno.readFile(SAMPLE_SEGMENT);
const realPlain = plain;
const SEG = "000000010000000000000006";
const opts = { segmentSize: plain.length };

async function withFile(bytes: Uint8Array, fn: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/f`, bytes);
    await fn(`${dir}/f`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const rejectsWith = (p: Promise<unknown>, problem: string) =>
  assert.rejects(p, (e: unknown) => e instanceof ArchiveFormatError && e.problem === problem);

Deno.test("readArchivedFile: pgBackRest SHA-1 checked, right and wrong", async () => {
  const sum = new Uint8Array(await crypto.subtle.digest("SHA-1", plain)).toHex();
  const gz = await pipeThroughTool("gzip", ["-c"], plain);
  await withFile(gz, async (path) => {
    const ok = await readArchivedFile({ name: SEG, path, format: "gzip", expectedSha1: sum }, opts);
    assert.equal(ok.data.length, plain.length);
    const wrong = sum.replace(/^./, sum[0] === "0" ? "1" : "0");
    await rejectsWith(
      readArchivedFile({ name: SEG, path, format: "gzip", expectedSha1: wrong }, opts),
      "checksum",
    );
  });
});

Deno.test("readArchivedFile: a complete segment must have the segment size", async () => {
  const short = await pipeThroughTool("zstd", ["-q", "-c"], plain.subarray(0, 8192));
  await withFile(short, async (path) => {
    await rejectsWith(readArchivedFile({ name: SEG, path, format: "zstd" }, opts), "size");
    const p = await readArchivedFile({ name: `${SEG}.partial`, path, format: "zstd" }, opts);
    assert.deepEqual([p.data.length, p.complete], [8192, true]);
  });
});

Deno.test("readArchivedFile: a cut stream is corrupt for a segment, a prefix for a .partial", async () => {
  const lz4 = await pipeThroughTool("lz4", ["-q", "-c", "-BD", "-B4", "--no-frame-crc"], plain);
  await withFile(lz4.subarray(0, lz4.length >> 1), async (path) => {
    await rejectsWith(readArchivedFile({ name: SEG, path, format: "lz4" }, opts), "corrupt");
    const p = await readArchivedFile({ name: `${SEG}.partial`, path, format: "lz4" }, opts);
    assert.equal(p.complete, false);
    assert.ok(p.data.length > 0 && p.data.every((v, i) => v === plain[i]));
  });
});

Deno.test("readArchivedFile: format by magic when the entry has none (Barman)", async () => {
  const xz = await pipeThroughTool("xz", ["-c"], plain);
  await withFile(xz, async (path) => {
    assert.equal(await archivedFormat({ name: SEG, path }), "xz");
    const r = await readArchivedFile({ name: SEG, path }, opts);
    assert.equal(r.format, "xz");
    assert.deepEqual(r.data, plain);
  });
});

Deno.test("readArchivedFile: unknown format is an error naming file and format", async () => {
  await withFile(new Uint8Array([0x5d, 0, 0, 0x80]), async (path) => {
    await assert.rejects(
      readArchivedFile({ name: SEG, path, format: "lzma" }, opts),
      (e: unknown) =>
        e instanceof ArchiveFormatError && e.format === "lzma" && e.file === path &&
        e.problem === "unsupported",
    );
  });
});

// A quiet server's segment: a little WAL, then zeros. Its lz4 frame is small enough for the
// TypeScript decoder's path (asserted below), ordinary WAL's is not.
const sparse = plain.slice();
sparse.fill(0, 32 * 1024);

for (const [kind, plain] of [["WAL", realPlain], ["mostly zeros", sparse]] as const) {
  Deno.test(`readArchivedFile into a given buffer (${kind}): gzip, lz4 and zstd decoded there when whole, otherwise as without it`, async () => {
    const opts = { segmentSize: plain.length };
    const frames = {
      gzip: await pipeThroughTool("gzip", ["-c"], plain),
      lz4: await pipeThroughTool("lz4", ["-q", "-c", "-BD", "-B4", "--no-frame-crc"], plain),
      zstd: await pipeThroughTool("zstd", ["-q", "-c"], plain),
    };
    // Each of lz4's two ways is taken by one of the inputs.
    assert.equal(
      frames.lz4.length * LZ4_DIRECT_RATIO <= plain.length,
      kind !== "WAL",
      `lz4 ${plain.length} → ${frames.lz4.length} bytes`,
    );
    for (const [format, bytes] of Object.entries(frames) as [keyof typeof frames, Uint8Array][]) {
      const read = async (b: Uint8Array, segmentSize = plain.length) => {
        let r;
        await withFile(b, async (path) => {
          const into = new Uint8Array(new SharedArrayBuffer(segmentSize)).fill(0xee);
          r = {
            into,
            ...await readArchivedFile({ name: SEG, path, format }, { segmentSize, into }),
          };
        });
        return r!;
      };
      const whole = await read(bytes);
      assert.equal(whole.data, whole.into, `${format}: decoded in place`);
      assert.deepEqual(new Uint8Array(whole.data), plain);
      // What follows the frame is not ours.
      const junk = new Uint8Array(bytes.length + 64).fill(0xab);
      junk.set(bytes);
      const trailing = await read(junk);
      // (gzip leaves a member with bytes after it to the general path, which finds its end.)
      if (format !== "gzip") {
        assert.equal(trailing.data, trailing.into, `${format}: trailing bytes ignored`);
      }
      assert.deepEqual(new Uint8Array(trailing.data), plain);
      // Cut short, damaged, or of another size: the errors of the general path.
      await rejectsWith(read(bytes.subarray(0, bytes.length - 3)), "corrupt");
      const bad = bytes.slice();
      bad[bad.length >> 1]! ^= 0x55;
      // (lz4 as pg_receivewal writes it has no checksum: damage may decode, as it does without.)
      const outcome = (p: Promise<{ data: Uint8Array }>) =>
        p.then((r) => new Uint8Array(r.data).toHex(), (e) => (e as ArchiveFormatError).problem);
      let plainWay = "";
      await withFile(bad, async (path) => {
        plainWay = await outcome(readArchivedFile({ name: SEG, path, format }, opts));
      });
      assert.equal(await outcome(read(bad)), plainWay, `${format}: damaged`);
      await rejectsWith(read(bytes, plain.length * 2), "size");
    }
  });
}

Deno.test("readArchivedFile into a given buffer: an lz4 file the decoder refused leaves the next ones readable", async () => {
  const good = await pipeThroughTool("lz4", ["-q", "-c", "-BD", "-B4", "--no-frame-crc"], plain);
  const bad = good.slice();
  bad.fill(0xff, 1000, 1400);
  const read = (bytes: Uint8Array) =>
    withFile(bytes, async (path) => {
      const into = new Uint8Array(new SharedArrayBuffer(plain.length));
      const r = await readArchivedFile({ name: SEG, path, format: "lz4" }, { ...opts, into });
      assert.equal(r.data, into);
      assert.deepEqual(new Uint8Array(r.data), plain);
    });
  await read(good);
  await rejectsWith(read(bad), "corrupt");
  await read(good);
});

Deno.test("readArchivedFile into a given buffer: an lz4 frame's content checksum is checked, however small the frame", async () => {
  // Mostly zeros, with the content checksum lz4 writes by default: the damage below decodes, so
  // only the checksum can tell.
  const frame = await pipeThroughTool("lz4", ["-q", "-c", "-BD", "-B4"], sparse);
  assert.ok(frame.length * LZ4_DIRECT_RATIO <= sparse.length, `${frame.length} bytes`);
  // A literal byte of the WAL at the start: the first token's literals follow the headers.
  const bad = frame.slice();
  bad[40]! ^= 0x01;
  await withFile(bad, async (path) => {
    const into = new Uint8Array(new SharedArrayBuffer(sparse.length));
    await rejectsWith(
      readArchivedFile({ name: SEG, path, format: "lz4" }, { ...opts, into }),
      "corrupt",
    );
  });
  // Undamaged, it is decoded in place.
  await withFile(frame, async (path) => {
    const into = new Uint8Array(new SharedArrayBuffer(sparse.length));
    const r = await readArchivedFile({ name: SEG, path, format: "lz4" }, { ...opts, into });
    assert.equal(r.data, into);
  });
});
