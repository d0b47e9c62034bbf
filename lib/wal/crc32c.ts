/**
 * CRC-32C (Castagnoli), the checksum of WAL records (`pg_crc32c`).
 *
 * Reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF. Validating WAL means
 * checksumming every byte of it, so this is written for speed: the CPU's CRC instructions
 * (_crc32c_native.ts) for long pieces where the process may load native code; otherwise
 * slicing-by-16 over a 16 × 256 table, in WebAssembly (_crc32c_wasm.ts) for pieces long enough to
 * repay copying them into its memory, in JavaScript for short pieces and where WebAssembly is
 * unavailable.
 *
 * @module
 */
import { CRC32C_TABLE, crc32cUpdater } from "./_crc32c_js.ts";
import { type Crc32cKernel, crc32cKernel, WASM_CHUNK, WASM_INPUT } from "./_crc32c_wasm.ts";
import { loadNativeCrc32c, type NativeCrc32c } from "./_crc32c_native.ts";

/**
 * Pieces at least this long go to WebAssembly. Below it, copying the piece and calling out cost
 * as much as they save (measured with crc32c_bench.ts; most WAL records are shorter).
 */
const WASM_MIN = 128;

/** The WebAssembly loop over `data[start, end)`, copied into its memory a chunk at a time. */
function wasmUpdater(k: Crc32cKernel): (c: number, d: Uint8Array, s: number, e: number) => number {
  return (crc, data, start, end) => {
    let c = crc | 0;
    for (let i = start; i < end; i += WASM_CHUNK) {
      const stop = Math.min(i + WASM_CHUNK, end);
      k.heap.set(data.subarray(i, stop), WASM_INPUT);
      c = k.update(c, WASM_INPUT, WASM_INPUT + stop - i);
    }
    return c >>> 0;
  };
}

/**
 * Pieces at least this long go to the native instructions. A call into the addon, with the view
 * it needs, costs about 0.1 µs: over 4 MiB in pieces of 256 bytes the addon and the table loops
 * took the same time, in pieces of 512 the addon a third less.
 */
const NATIVE_MIN = 512;

/** The WebAssembly loop, or undefined where it cannot be instantiated. */
const KERNEL = crc32cKernel(CRC32C_TABLE);

/** The CPU's instructions, or undefined where the addon may not or cannot be loaded. */
const NATIVE = await loadNativeCrc32c();

/**
 * Hands long pieces to the native function and the rest to `shorter`. The addon continues a
 * finished CRC, so the running state goes in and comes out complemented.
 */
function nativeUpdater(
  native: NativeCrc32c,
  shorter: (c: number, d: Uint8Array, s: number, e: number) => number,
): (c: number, d: Uint8Array, s: number, e: number) => number {
  return (crc, data, start, end) =>
    end - start >= NATIVE_MIN
      ? ~native(data.subarray(start, end), ~crc >>> 0) >>> 0
      : shorter(crc, data, start, end);
}

/**
 * What checksums long pieces in this process: `"native"` (the CPU's CRC instructions, loaded
 * with `--allow-ffi`), `"wasm"` (the table loop in WebAssembly) or `"js"`. Short pieces always
 * take the JavaScript loop.
 *
 * @example
 * ```ts
 * import { crc32cImplementation } from "./crc32c.ts";
 * import assert from "node:assert/strict";
 * assert.ok(["native", "wasm", "js"].includes(crc32cImplementation));
 * ```
 */
export const crc32cImplementation: "native" | "wasm" | "js" = NATIVE !== undefined
  ? "native"
  : KERNEL !== undefined
  ? "wasm"
  : "js";

/**
 * Feeds `data[start, end)` into a running CRC-32C state, without the initial and final XOR:
 * PostgreSQL's `COMP_CRC32C`. Start from `0xFFFFFFFF` (`INIT_CRC32C`) and XOR the result with
 * `0xFFFFFFFF` (`FIN_CRC32C`) when done; this is the form for checksums computed over pieces in
 * an order other than the bytes' own, like the WAL record CRC (body first, then header).
 *
 * @param crc The running state (unsigned or signed 32-bit; both work).
 * @param data The bytes.
 * @param start First index to feed (default 0).
 * @param end Index after the last byte to feed (default `data.length`).
 * @returns The new running state, as an unsigned 32-bit number.
 *
 * @example
 * ```ts
 * import { crc32cUpdate } from "./crc32c.ts";
 * import assert from "node:assert/strict";
 * const bytes = new TextEncoder().encode("123456789");
 * let state = 0xFFFFFFFF;
 * state = crc32cUpdate(state, bytes, 4);
 * state = crc32cUpdate(state, bytes, 0, 4);
 * // the CRC of "56789" followed by "1234"
 * assert.equal((state ^ 0xFFFFFFFF) >>> 0, 0x7AA12419);
 * ```
 */
export const crc32cUpdate: (
  crc: number,
  data: Uint8Array,
  start?: number,
  end?: number,
) => number = (() => {
  const wasm = KERNEL === undefined ? undefined : wasmUpdater(KERNEL);
  const long = NATIVE === undefined ? wasm : nativeUpdater(NATIVE, wasm ?? crc32cUpdater());
  if (long === undefined) return crc32cUpdater();
  return crc32cUpdater(long, wasm === undefined ? NATIVE_MIN : WASM_MIN);
})();

/**
 * The CRC-32C of `data`. Pass the result of an earlier call as `crc` to continue it over more
 * bytes, so `crc32c(b, crc32c(a))` equals the CRC of `a` followed by `b`.
 *
 * @param data The bytes.
 * @param crc A finished CRC to continue from (default: start afresh).
 * @returns The CRC, an unsigned 32-bit number.
 *
 * @example
 * ```ts
 * import { crc32c } from "./crc32c.ts";
 * import assert from "node:assert/strict";
 * const enc = new TextEncoder();
 * assert.equal(crc32c(enc.encode("123456789")), 0xE3069283);
 * assert.equal(crc32c(enc.encode("6789"), crc32c(enc.encode("12345"))), 0xE3069283);
 * ```
 */
export function crc32c(data: Uint8Array, crc: number = 0): number {
  return (crc32cUpdate(~crc, data) ^ 0xFFFFFFFF) >>> 0;
}
