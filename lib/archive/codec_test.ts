import assert from "node:assert/strict";
import { brotliCompressSync } from "node:zlib";
import { decodeArchived } from "./codec.ts";
import { ArchiveFormatError } from "./errors.ts";
import { detectFormat } from "./format.ts";
import { cat, isPrefix, pipeThroughTool, SAMPLE_SEGMENT, TOOLS } from "./_test_utils.ts";

const plain = await Deno.readFile(SAMPLE_SEGMENT);
const SIZE = plain.length;
const junk = new Uint8Array(100_000).fill(0xab);
const made = new Map<string, Uint8Array>();
async function compressed(tool: string): Promise<Uint8Array> {
  if (!made.has(tool)) {
    const [cmd, args] = TOOLS[tool]!;
    made.set(tool, await pipeThroughTool(cmd, args, plain));
  }
  return made.get(tool)!;
}
const formatOf = (tool: string) => detectFormat("x", made.get(tool) ?? new Uint8Array(0));

for (const tool of Object.keys(TOOLS)) {
  Deno.test(`codec: ${tool} made by the CLI decodes to the segment`, async () => {
    const src = await compressed(tool);
    const r = await decodeArchived(src, formatOf(tool), { file: tool, sizeHint: SIZE });
    assert.equal(r.complete, true);
    assert.ok(r.data.length === SIZE && isPrefix(r.data, plain));
  });
}

Deno.test("codec: brotli (by name only) decodes", async () => {
  const src = new Uint8Array(brotliCompressSync(plain));
  assert.equal(detectFormat("000000010000000000000006.br", src.subarray(0, 16)), "brotli");
  const r = await decodeArchived(src, "brotli", { file: "x.br" });
  assert.ok(r.complete && r.data.length === SIZE && isPrefix(r.data, plain));
});

for (const tool of ["gzip", "lz4", "lz4_receivewal", "zstd"]) {
  Deno.test(`codec: ${tool} ignores a garbage tail after the first member/frame`, async () => {
    const src = cat(await compressed(tool), junk);
    const r = await decodeArchived(src, formatOf(tool), { file: tool, sizeHint: SIZE });
    assert.equal(r.complete, true);
    assert.ok(r.data.length === SIZE && isPrefix(r.data, plain));
  });

  Deno.test(`codec: ${tool} cut short yields a true prefix, marked incomplete`, async () => {
    const whole = await compressed(tool);
    for (const cut of [whole.length >> 1, whole.length - 1, 20]) {
      const r = await decodeArchived(whole.subarray(0, cut), formatOf(tool), {
        file: tool,
        sizeHint: SIZE,
      });
      assert.equal(r.complete, false, `cut at ${cut}`);
      assert.ok(r.data.length <= SIZE && isPrefix(r.data, plain), `cut at ${cut}`);
    }
  });
}

Deno.test("codec: a 0-byte gzip .partial is an empty, incomplete stream", async () => {
  const r = await decodeArchived(new Uint8Array(0), "gzip", { file: "x.gz.partial" });
  assert.deepEqual(r, { data: new Uint8Array(0), complete: false });
  assert.equal(detectFormat("000000010000000000000006.gz.partial", new Uint8Array(0)), "gzip");
});

Deno.test("codec: a bare 7-byte lz4 frame header is an empty, incomplete stream", async () => {
  const header = (await compressed("lz4_receivewal")).subarray(0, 7);
  assert.equal(detectFormat("000000010000000000000006.lz4.partial", header), "lz4");
  const r = await decodeArchived(header, "lz4", { file: "x.lz4.partial" });
  assert.deepEqual(r, { data: new Uint8Array(0), complete: false });
});

Deno.test("codec: a damaged gzip member is an ArchiveFormatError naming the file", async () => {
  const bad = (await compressed("gzip")).slice();
  for (let i = 200; i < 260; i++) bad[i]! ^= 0x5a;
  await assert.rejects(
    decodeArchived(bad, "gzip", { file: "/a/000000010000000000000006.gz" }),
    (e: unknown) =>
      e instanceof ArchiveFormatError && e.problem === "corrupt" && e.format === "gzip" &&
      e.message.includes("/a/000000010000000000000006.gz"),
  );
});

Deno.test("codec: a damaged lz4 frame with checksums is an ArchiveFormatError", async () => {
  const bad = (await compressed("lz4")).slice();
  for (let i = 200; i < 260; i++) bad[i]! ^= 0x5a;
  await assert.rejects(
    decodeArchived(bad, "lz4", { file: "x.lz4" }),
    (e: unknown) => e instanceof ArchiveFormatError && e.problem === "corrupt",
  );
});

Deno.test("codec: after an lz4 frame the decoder refused, the next frames still decode", async () => {
  const good = await compressed("lz4");
  const bad = good.slice();
  // Literal lengths and offsets that point outside the block: LZ4's decoder fails mid-frame.
  bad.fill(0xff, 1000, 1400);
  for (let round = 0; round < 2; round++) {
    await assert.rejects(
      decodeArchived(bad, "lz4", { file: "bad.lz4", sizeHint: SIZE }),
      (e: unknown) => e instanceof ArchiveFormatError && e.problem === "corrupt",
    );
    const r = await decodeArchived(good, "lz4", { file: "good.lz4", sizeHint: SIZE });
    assert.ok(r.complete && r.data.length === SIZE && isPrefix(r.data, plain), `round ${round}`);
  }
});

Deno.test("codec: an encrypted file is told as such, whatever its name says", async () => {
  const sealed = new Uint8Array([
    ...new TextEncoder().encode("Salted__"),
    ...plain.subarray(0, 64),
  ]);
  for (const format of ["plain", "gzip", "lz4", "zstd", "bzip2"] as const) {
    await assert.rejects(
      decodeArchived(sealed, format, { file: `x.${format}` }),
      (e: unknown) =>
        e instanceof ArchiveFormatError && e.problem === "encrypted" &&
        /"x\.\w+": encrypted .*does not decrypt/.test(e.message),
    );
  }
});

Deno.test("codec: lzma has no decoder: an error naming the file and the format", async () => {
  await assert.rejects(
    decodeArchived(new Uint8Array([0x5d, 0, 0]), "lzma", {
      file: "/w/000000010000000000000006.lzma",
    }),
    (e: unknown) =>
      e instanceof ArchiveFormatError && e.problem === "unsupported" &&
      /\/w\/000000010000000000000006\.lzma.*no decoder for lzma/.test(e.message),
  );
});

Deno.test("codec: snappy framing format, as python-snappy streams it", async () => {
  const { compress } = await import("npm:snappyjs@0.7.0");
  const chunk = (type: number, body: Uint8Array) =>
    cat(
      new Uint8Array([type, body.length & 255, (body.length >> 8) & 255, body.length >> 16]),
      body,
    );
  const parts = [chunk(0xff, new TextEncoder().encode("sNaPpY"))];
  for (let off = 0; off < SIZE; off += 65536) {
    const block = compress(plain.subarray(off, off + 65536)) as Uint8Array;
    parts.push(chunk(0x00, cat(new Uint8Array(4), block)));
  }
  const src = parts.reduce(cat);
  assert.equal(detectFormat("000000010000000000000006", src.subarray(0, 16)), "snappy");
  const r = await decodeArchived(src, "snappy", { file: "x" });
  assert.ok(r.complete && r.data.length === SIZE && isPrefix(r.data, plain));
  const cut = await decodeArchived(src.subarray(0, src.length - 10), "snappy", { file: "x" });
  assert.ok(!cut.complete && isPrefix(cut.data, plain) && cut.data.length === SIZE - 65536);
});

Deno.test("codec: plain bytes pass through", async () => {
  assert.equal(detectFormat("000000010000000000000006", plain.subarray(0, 16)), "plain");
  const r = await decodeArchived(plain, "plain", { file: "x" });
  assert.equal(r.data, plain);
});

Deno.test("codec: lz4 frames decoded at once, one of them refused: the others still decode", async () => {
  const good = await compressed("lz4");
  const bad = good.slice();
  bad.fill(0xff, 1000, 1400);
  const results = await Promise.allSettled(
    [good, bad, good, good, bad, good].map((src) =>
      decodeArchived(src, "lz4", { file: "x.lz4", sizeHint: SIZE })
    ),
  );
  assert.deepEqual(
    results.map((r) => r.status),
    ["fulfilled", "rejected", "fulfilled", "fulfilled", "rejected", "fulfilled"],
  );
});
