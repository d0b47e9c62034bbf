import assert from "node:assert/strict";
import { zstdDecompressSync } from "node:zlib";
import { CopySink } from "./copy_sink.ts";
import { pipeThroughTool } from "../archive/_test_utils.ts";

/** The CopyData payloads sent, as [kind, payload] (the message header checked on the way). */
function recorder(): { sent: [string, Uint8Array][]; send: (...m: Uint8Array[]) => Promise<void> } {
  const sent: [string, Uint8Array][] = [];
  return {
    sent,
    // Writes may carry many messages back to back: split them again.
    send: (...writes) => {
      for (const w of writes) {
        for (let at = 0; at < w.length;) {
          assert.equal(w[at], 0x64);
          const len = new DataView(w.buffer, w.byteOffset + at).getInt32(1);
          const m = w.subarray(at, at + 1 + len);
          sent.push([String.fromCharCode(m[5]!), m.slice(6)]);
          at += 1 + len;
        }
      }
      return Promise.resolve();
    },
  };
}

Deno.test("copy sink: n, d of at most 32 kB, p at the end of each archive, m before the manifest", async () => {
  const r = recorder();
  const sink = new CopySink(r, { sendToClient: true, maxRateKb: 0, compression: "none" });
  await sink.beginArchive("16384.tar", "/srv/ts1");
  await sink.archive(new Uint8Array(70000).fill(1));
  await sink.endArchive();
  await sink.beginArchive("base.tar", "");
  await sink.archive(new Uint8Array(512));
  await sink.endArchive();
  await sink.manifest(new Uint8Array(40000));
  assert.deepEqual(r.sent.map(([k, p]) => `${k}${p.length}`), [
    "n19",
    "d32768",
    "d32768",
    "d4464",
    "p8",
    "n10",
    "d512",
    "p8",
    "m0",
    "d32768",
    "d7232",
  ]);
  assert.deepEqual([...r.sent[0]![1]], [...new TextEncoder().encode("16384.tar\0/srv/ts1\0")]);
  // Progress is cumulative across archives.
  const progress = r.sent.filter(([k]) => k === "p").map(([, p]) =>
    new DataView(p.buffer, p.byteOffset).getBigInt64(0)
  );
  assert.deepEqual(progress, [70000n, 70512n]);
});

Deno.test("copy sink: TARGET 'blackhole' sends no data, only the framing", async () => {
  const r = recorder();
  const sink = new CopySink(r, { sendToClient: false, maxRateKb: 0, compression: "none" });
  await sink.beginArchive("base.tar", "");
  await sink.archive(new Uint8Array(100000));
  await sink.endArchive();
  await sink.manifest(new Uint8Array(10));
  assert.deepEqual(r.sent.map(([k]) => k), ["n", "p", "m"]);
});

Deno.test("copy sink: server-side gzip names the archive .gz and inflates to the tar bytes", async () => {
  const r = recorder();
  const sink = new CopySink(r, { sendToClient: true, maxRateKb: 0, compression: "gzip" });
  const tar = new Uint8Array(300000).map((_, i) => i % 251);
  await sink.beginArchive("base.tar", "");
  await sink.archive(tar.subarray(0, 100000));
  await sink.archive(tar.subarray(100000));
  await sink.endArchive();
  assert.equal(new TextDecoder().decode(r.sent[0]![1]), "base.tar.gz\0\0");
  const gz = r.sent.filter(([k]) => k === "d").map(([, p]) => p.slice());
  const plain = await new Response(
    ReadableStream.from(gz).pipeThrough(new DecompressionStream("gzip")),
  ).bytes();
  assert.deepEqual(plain, tar);
  assert.equal(sink.bytesDone, tar.length);
});

Deno.test("copy sink: MAX_RATE is honoured", async () => {
  const r = recorder();
  const sink = new CopySink(r, { sendToClient: true, maxRateKb: 1024, compression: "none" });
  const t0 = performance.now();
  await sink.beginArchive("base.tar", "");
  await sink.archive(new Uint8Array(512 * 1024));
  await sink.endArchive();
  const ms = performance.now() - t0;
  assert.ok(ms >= 450, `512 kB at 1 MB/s took ${ms.toFixed(0)} ms`);
});

Deno.test("copy sink: mid-archive progress once 64 kB and a second have passed", async () => {
  const r = recorder();
  const sink = new CopySink(r, { sendToClient: true, maxRateKb: 128, compression: "none" });
  await sink.beginArchive("base.tar", "");
  for (let i = 0; i < 12; i++) await sink.archive(new Uint8Array(16384));
  await sink.endArchive();
  const kinds = r.sent.map(([k]) => k);
  // 192 kB at 128 kB/s: one report after the first second, and the one at the end.
  assert.equal(kinds.filter((k) => k === "p").length, 2, kinds.join(""));
  assert.notEqual(kinds.indexOf("p"), kinds.length - 1);
});

Deno.test("copy sink: server-side zstd names the archive .zst and decompresses to the tar bytes", async () => {
  const r = recorder();
  const sink = new CopySink(r, { sendToClient: true, maxRateKb: 0, compression: "zstd", level: 5 });
  const tar = new Uint8Array(300000).map((_, i) => i % 251);
  await sink.beginArchive("base.tar", "");
  await sink.archive(tar);
  await sink.endArchive();
  assert.equal(new TextDecoder().decode(r.sent[0]![1]), "base.tar.zst\0\0");
  const zst = r.sent.filter(([k]) => k === "d").map(([, p]) => p);
  const all = new Uint8Array(zst.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of zst) {
    all.set(p, at);
    at += p.length;
  }
  assert.deepEqual(new Uint8Array(zstdDecompressSync(all)), tar);
});

Deno.test("copy sink: server-side lz4 names the archive .lz4, one frame that lz4 -d reads back", async () => {
  const r = recorder();
  const sink = new CopySink(r, { sendToClient: true, maxRateKb: 0, compression: "lz4" });
  const tar = new Uint8Array(700000).map((_, i) => (i >> 3) % 251);
  await sink.beginArchive("base.tar", "");
  await sink.archive(tar.subarray(0, 1000));
  await sink.archive(tar.subarray(1000));
  await sink.endArchive();
  assert.equal(new TextDecoder().decode(r.sent[0]![1]), "base.tar.lz4\0\0");
  const parts = r.sent.filter(([k]) => k === "d").map(([, p]) => p);
  const frame = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    frame.set(p, at);
    at += p.length;
  }
  assert.ok(frame.length < tar.length / 4, `${frame.length} bytes`);
  assert.deepEqual(await pipeThroughTool("lz4", ["-d", "-c"], frame), tar);
  assert.equal(sink.bytesDone, tar.length);
});
