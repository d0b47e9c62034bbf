/**
 * Decoders of archived WAL, measured on one 16 MiB segment compressed by the real CLIs:
 * `deno bench -A lib/archive/codecs_bench.ts`. Set `ARCHIVE_BENCH_SEGMENT` to a real segment
 * (from pg_wal after pgbench); without it the sample segments of testdata/wal are joined to
 * 16 MiB. Each group lists the decoder codec.ts uses first, then the candidates it was chosen
 * over. The inputs are made by the first iteration, outside the timing, so importing this file
 * starts nothing. (`@bokuweb/zstd-wasm` was also tried: it needs the frame's content size, which
 * `zstd` writing to a pipe and pgBackRest's streaming compression leave out.)
 *
 * @module
 */

import { brotliDecompressSync, gunzipSync, zstdDecompressSync } from "node:zlib";
import { decodeArchived } from "./codec.ts";
import { decodeLz4Frame } from "./_lz4.ts";
import { decodeSegmentInto } from "./_decode_into.ts";
import { pipeThroughTool } from "./_test_utils.ts";

const SIZE = 16 * 1024 * 1024;
const INTO = new Uint8Array(new SharedArrayBuffer(SIZE));
let inputs: Promise<Record<string, Uint8Array>> | undefined;

function prepare(): Promise<Record<string, Uint8Array>> {
  inputs ??= (async () => {
    let plain: Uint8Array;
    const path = Deno.env.get("ARCHIVE_BENCH_SEGMENT");
    if (path) plain = await Deno.readFile(path);
    else {
      const dir = new URL("../../testdata/wal/", import.meta.url);
      const parts: Uint8Array[] = [];
      for await (const e of Deno.readDir(dir)) {
        if (/^[0-9A-F]{24}$/.test(e.name)) parts.push(await Deno.readFile(new URL(e.name, dir)));
      }
      plain = new Uint8Array(SIZE);
      for (let off = 0, i = 0; off < SIZE; i++) {
        const p = parts[i % parts.length]!.subarray(0, SIZE - off);
        plain.set(p, off);
        off += p.length;
      }
    }
    const tool = (cmd: string, ...args: string[]) => pipeThroughTool(cmd, args, plain);
    return {
      plain,
      gzip: await tool("gzip", "-c"),
      lz4: await tool("lz4", "-q", "-c", "-BD", "-B4", "--no-frame-crc"),
      zstd: await tool("zstd", "-q", "-c"),
      bzip2: await tool("bzip2", "-c"),
      xz: await tool("xz", "-c"),
      brotli: await tool("brotli", "-c"),
    };
  })();
  return inputs;
}

function bench(
  group: string,
  name: string,
  baseline: boolean,
  run: (src: Uint8Array) => Promise<unknown> | unknown,
): void {
  Deno.bench({
    name: `${group}: ${name}`,
    group,
    baseline,
    n: 10,
    warmup: 2,
    async fn(b) {
      const src = (await prepare())[group]!;
      b.start();
      await run(src);
      b.end();
    },
  });
}

const viaStream = (format: CompressionFormat) => (src: Uint8Array) =>
  new Response(
    new Blob([src as Uint8Array<ArrayBuffer>]).stream().pipeThrough(
      new DecompressionStream(format),
    ),
  ).bytes();

bench(
  "gzip",
  "codec.ts (node:zlib gunzipSync)",
  true,
  (s) => decodeArchived(s, "gzip", { file: "b" }),
);
bench("gzip", "node:zlib gunzipSync", false, (s) => gunzipSync(s));
bench("gzip", "DecompressionStream", false, viaStream("gzip"));
bench("gzip", "fflate", false, async (s) => (await import("npm:fflate@0.8.3")).gunzipSync(s));

bench("lz4", "codec.ts (@foxglove/wasm-lz4)", true, (s) => decodeArchived(s, "lz4", { file: "b" }));
bench("lz4", "own TypeScript decoder (_lz4.ts)", false, (s) => decodeLz4Frame(s, SIZE));
bench("lz4", "own decoder into one buffer", false, (s) => decodeLz4Frame(s, 0, false, INTO));
bench("lz4", "wasm-lz4 into one buffer", false, (s) => decodeSegmentInto(s, "lz4", INTO));
bench("lz4", "lz4js", false, async (s) => (await import("npm:lz4js@0.2.0")).decompress(s, SIZE));

bench(
  "zstd",
  "codec.ts (node:zlib zstdDecompressSync)",
  true,
  (s) => decodeArchived(s, "zstd", { file: "b" }),
);
bench("zstd", "node:zlib zstdDecompressSync", false, (s) => zstdDecompressSync(s));
bench("zstd", "fzstd", false, async (s) => (await import("npm:fzstd@0.1.1")).decompress(s));

bench(
  "bzip2",
  "codec.ts (@foxglove/wasm-bz2)",
  true,
  (s) => decodeArchived(s, "bzip2", { file: "b" }),
);
bench(
  "bzip2",
  "seek-bzip",
  false,
  async (s) => (await import("npm:seek-bzip@2.0.0")).default.decode(s),
);

bench("xz", "codec.ts (xz-decompress)", true, (s) => decodeArchived(s, "xz", { file: "b" }));

bench(
  "brotli",
  "codec.ts (node:zlib brotliDecompressSync)",
  true,
  (s) => decodeArchived(s, "brotli", { file: "b" }),
);
bench("brotli", "node:zlib brotliDecompressSync", false, (s) => brotliDecompressSync(s));
bench("brotli", "DecompressionStream", false, viaStream("brotli" as CompressionFormat));
