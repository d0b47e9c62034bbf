import assert from "node:assert/strict";
import { ArchiveFormatError } from "./errors.ts";
import { archivedFormat, readArchivedFile } from "./read_segment.ts";
import { pipeThroughTool, SAMPLE_SEGMENT } from "./_test_utils.ts";

const plain = await Deno.readFile(SAMPLE_SEGMENT);
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
