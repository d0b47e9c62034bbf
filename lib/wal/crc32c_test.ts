import assert from "node:assert/strict";
import { crc32c, crc32cImplementation, crc32cUpdate } from "./crc32c.ts";
import { CRC32C_TABLE, crc32cUpdater } from "./_crc32c_js.ts";
import { crc32cKernel, WASM_CHUNK } from "./_crc32c_wasm.ts";
import { loadNativeCrc32c } from "./_crc32c_native.ts";

/** The JavaScript loop alone, which runs where WebAssembly does not. */
const crc32cUpdateJs = crc32cUpdater();
import { parseWalFileName } from "./segment.ts";

/** Bit-at-a-time CRC-32C, the definition the fast one must match. */
function reference(data: Uint8Array): number {
  let c = 0xFFFFFFFF;
  for (const byte of data) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82F63B78 : c >>> 1;
  }
  return (c ^ 0xFFFFFFFF) >>> 0;
}

Deno.test("crc32c of the standard check string", () => {
  assert.equal(crc32c(new TextEncoder().encode("123456789")), 0xE3069283);
  assert.equal(crc32c(new Uint8Array(0)), 0);
  assert.equal(crc32c(new Uint8Array(32)), 0x8A9136AA); // RFC 3720 B.4: 32 bytes of zeros
  assert.equal(crc32c(new Uint8Array(32).fill(0xFF)), 0x62A8AB43);
});

Deno.test("crc32c matches the bitwise definition at every length, offset and split", () => {
  const data = new Uint8Array(700);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 23;
  for (let len = 0; len <= 300; len++) {
    for (const off of [0, 1, 3, 7]) {
      const piece = data.subarray(off, off + len);
      const want = reference(piece);
      assert.equal(crc32c(piece), want);
      const cut = len >> 1;
      assert.equal(crc32c(piece.subarray(cut), crc32c(piece.subarray(0, cut))), want);
      const raw = crc32cUpdate(
        crc32cUpdate(0xFFFFFFFF, data, off, off + cut),
        data,
        off + cut,
        off + len,
      );
      assert.equal((raw ^ 0xFFFFFFFF) >>> 0, want);
      assert.equal((crc32cUpdateJs(0xFFFFFFFF, data, off, off + len) ^ 0xFFFFFFFF) >>> 0, want);
    }
  }
  assert.equal(crc32c(data), reference(data));
});

/** Byte-at-a-time CRC-32C over `data[start, end)`, a running state in and out. */
function bytewise(crc: number, data: Uint8Array, start: number, end: number): number {
  let c = crc | 0;
  for (let i = start; i < end; i++) c = CRC32C_TABLE[(c ^ data[i]!) & 0xFF]! ^ (c >>> 8);
  return c >>> 0;
}

Deno.test("crc32c is computed in WebAssembly and by the CPU's instructions here", () => {
  // Otherwise every other test checks the JavaScript loop twice. Tests run with --allow-all, so
  // the addon is loaded unless this platform has no build of it.
  assert.notEqual(crc32cKernel(CRC32C_TABLE), undefined);
  assert.equal(crc32cImplementation, "native");
});

Deno.test("crc32c: the native, WebAssembly and JavaScript paths agree across their thresholds", async () => {
  const native = await loadNativeCrc32c();
  assert.notEqual(native, undefined);
  const data = new Uint8Array(5000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 21;
  // 128 and 512 are where pieces move to WebAssembly and to the native instructions.
  const lengths = [0, 1, 127, 128, 129, 255, 256, 511, 512, 513, 1000, 4096, 4999];
  for (const len of lengths) {
    for (const off of [0, 1, 5]) {
      if (off + len > data.length) continue;
      const want = bytewise(0x0BADCAFE, data, off, off + len);
      assert.equal(crc32cUpdate(0x0BADCAFE, data, off, off + len), want, `${len} at ${off}`);
      assert.equal(crc32cUpdateJs(0x0BADCAFE, data, off, off + len), want, `${len} at ${off}`);
      // The addon continues a finished CRC: the running state complemented.
      const finished = native!(data.subarray(off, off + len), ~0x0BADCAFE >>> 0);
      assert.equal(~finished >>> 0, want, `native ${len} at ${off}`);
    }
  }
});

Deno.test("crc32c without --allow-ffi: the table loops, and no permission is asked for", async () => {
  const url = new URL("./crc32c.ts", import.meta.url).href;
  const code = `import { crc32c, crc32cImplementation } from ${JSON.stringify(url)};
    const d = new Uint8Array(100000).map((_, i) => (i * 2654435761) >>> 21);
    console.log(crc32cImplementation, crc32c(d));`;
  const want = crc32c(Uint8Array.from({ length: 100000 }, (_, i) => (i * 2654435761) >>> 21));
  const script = await Deno.makeTempFile({ suffix: ".ts" });
  try {
    await Deno.writeTextFile(script, code);
    const read = `--allow-read=${new URL("../..", import.meta.url).pathname},${script}`;
    // Without --allow-ffi; with it but without what the addon's loader reads; with all of it.
    const env = "--allow-env=NAPI_RS_FORCE_WASI";
    const cases = [
      [[read, env], "wasm"],
      [[read, "--allow-ffi"], "wasm"],
      [[read, "--allow-ffi", env], "wasm"],
      [[read + ",/usr/bin/ldd", "--allow-ffi", env], "native"],
    ] as const;
    for (const [perms, impl] of cases) {
      // --no-prompt turns any request for a permission into an error, which would fail the run.
      const out = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--no-prompt", ...perms, script],
        stdout: "piped",
        stderr: "piped",
      }).output();
      assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
      assert.equal(new TextDecoder().decode(out.stdout).trim(), `${impl} ${want}`, perms.join(" "));
    }
  } finally {
    await Deno.remove(script);
  }
});

Deno.test("crc32c of long buffers, across the WebAssembly input size, at odd offsets", () => {
  const data = new Uint8Array((16 << 20) + 8);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 23;
  const lengths = [WASM_CHUNK - 1, WASM_CHUNK, WASM_CHUNK + 1, 3 * WASM_CHUNK + 13, 1 << 20];
  for (const len of lengths) {
    for (const off of [0, 1, 3, 6]) {
      const want = bytewise(0x12345678, data, off, off + len);
      assert.equal(crc32cUpdate(0x12345678, data, off, off + len), want, `${len} at ${off}`);
      assert.equal(crc32cUpdateJs(0x12345678, data, off, off + len), want, `${len} at ${off}`);
    }
  }
  const all = bytewise(0xFFFFFFFF, data, 5, 5 + (16 << 20));
  assert.equal(crc32cUpdate(0xFFFFFFFF, data, 5, 5 + (16 << 20)), all);
  assert.equal(crc32cUpdateJs(0xFFFFFFFF, data, 5, 5 + (16 << 20)), all);
  // A view into the middle of a larger buffer, and one over shared memory.
  const view = data.subarray(7, 7 + 300_001);
  assert.equal(crc32c(view), (bytewise(0xFFFFFFFF, view, 0, view.length) ^ 0xFFFFFFFF) >>> 0);
  const shared = new Uint8Array(new SharedArrayBuffer(200_003));
  shared.set(data.subarray(0, shared.length));
  assert.equal(crc32cUpdate(-1, shared, 3), bytewise(-1, shared, 3, shared.length));
});

Deno.test("crc32c verifies real WAL records the way PostgreSQL computes them", async () => {
  // The first segment of the sample WAL: every record starting on its first page.
  const dir = new URL("../../testdata/wal/", import.meta.url);
  const names = [];
  for await (const e of Deno.readDir(dir)) {
    if (parseWalFileName(e.name, 1 << 20)?.kind === "segment") names.push(e.name);
  }
  names.sort();
  const seg = await Deno.readFile(new URL(names[0]!, dir));
  const v = new DataView(seg.buffer);
  let at = (v.getUint16(2, true) & 1) ? 40 + ((v.getUint32(16, true) + 7) & ~7) : 40;
  let checked = 0;
  while (at + 24 <= 8192) {
    const totLen = v.getUint32(at, true);
    if (totLen < 24 || at + totLen > 8192) break;
    // Body first, then the header up to xl_crc.
    const state = crc32cUpdate(
      crc32cUpdate(0xFFFFFFFF, seg, at + 24, at + totLen),
      seg,
      at,
      at + 20,
    );
    assert.equal((state ^ 0xFFFFFFFF) >>> 0, v.getUint32(at + 20, true), `record at offset ${at}`);
    const body = crc32c(seg.subarray(at + 24, at + totLen));
    assert.equal(crc32c(seg.subarray(at, at + 20), body), v.getUint32(at + 20, true));
    checked++;
    at += (totLen + 7) & ~7;
  }
  assert.ok(checked >= 1);
});
