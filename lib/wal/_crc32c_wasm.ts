/**
 * The CRC-32C loop of crc32c.ts as a WebAssembly function, assembled here from its opcodes so
 * that neither a toolchain nor a binary file is needed.
 *
 * The loop is bound by instructions per byte: a shift, a mask, a table load and an XOR. Deno does
 * not install V8's WebAssembly trap handler, so each load also gets an explicit bounds check, and
 * the loop ends up only some 10% faster than the same one in JavaScript (2.2–2.3 GB/s here; 3.2
 * with `--no-wasm-bounds-checks`). Folding 16-byte blocks with SIMD nibble-table swizzles avoids
 * the checks but spends about as many instructions, and was no faster. The function reads only
 * its own memory, so callers copy the bytes in first, at most {@linkcode WASM_CHUNK} at a time;
 * the copy is a memcpy, small beside the lookups.
 *
 * Memory (two 64 KiB pages):
 *
 *     [0, 16384)                     T[k * 256 + b] as little-endian 32-bit words
 *     [WASM_INPUT, + WASM_CHUNK)     the bytes to checksum
 *
 * @module
 */

/** Byte offset of the input area in the kernel's memory, just after the table. */
export const WASM_INPUT = 16384;

/** Size of the input area: the most bytes one call of the kernel may checksum. */
export const WASM_CHUNK = 65536;

/** The instantiated kernel. */
export interface Crc32cKernel {
  /** The kernel's memory; the bytes to checksum go at {@linkcode WASM_INPUT}. */
  heap: Uint8Array;
  /**
   * Feeds memory `[start, end)` into the running state `crc` (no initial or final XOR), as
   * crc32c.ts's `crc32cUpdate` does, and returns the new state as a signed 32-bit number.
   */
  update: (crc: number, start: number, end: number) => number;
}

// The opcodes used (WebAssembly core specification, 5.4).
const BLOCK = 0x02, LOOP = 0x03, END = 0x0b, BR_IF = 0x0d, VOID = 0x40;
const LOCAL_GET = 0x20, LOCAL_SET = 0x21, LOCAL_TEE = 0x22;
const I32_LOAD = 0x28, I32_LOAD8_U = 0x2d, I32_CONST = 0x41;
const I32_LT_U = 0x49, I32_GT_U = 0x4b, I32_LE_U = 0x4d, I32_GE_U = 0x4f;
const I32_ADD = 0x6a, I32_SUB = 0x6b, I32_AND = 0x71, I32_XOR = 0x73;
const I32_SHL = 0x74, I32_SHR_U = 0x76;
const I32 = 0x7f;

/** Unsigned LEB128, the encoding of indices, sizes and memory offsets. */
function uleb(n: number): number[] {
  const out = [];
  do {
    let b = n & 0x7f;
    n >>>= 7;
    if (n !== 0) b |= 0x80;
    out.push(b);
  } while (n !== 0);
  return out;
}

/** Signed LEB128, the encoding of `i32.const` operands. */
function sleb(n: number): number[] {
  const out = [];
  for (;;) {
    const b = n & 0x7f;
    n >>= 7;
    if ((n === 0 && (b & 0x40) === 0) || (n === -1 && (b & 0x40) !== 0)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

const get = (l: number): number[] => [LOCAL_GET, l];
const set = (l: number): number[] => [LOCAL_SET, l];
const i32 = (n: number): number[] => [I32_CONST, ...sleb(n)];
/** `i32.load` from the address on the stack plus `offset`; the 2 says 4-byte aligned. */
const load = (offset: number): number[] => [I32_LOAD, 2, ...uleb(offset)];

// Locals: the three parameters, then the words of a 16-byte block and the last block's start.
const CRC = 0, P = 1, END_ = 2, A = 3, B = 4, D = 5, E = 6, LAST = 7;

/**
 * `T[k][byte j of word w]`. One shift and one mask turn the byte into a byte offset (`× 4`) into
 * a table; the load's constant offset `k × 1024` selects table `k`.
 */
function lookup(w: number, j: number, k: number): number[] {
  const shift = j === 0 ? [...i32(2), I32_SHL] : [...i32(8 * j - 2), I32_SHR_U];
  return [...get(w), ...shift, ...i32(0x3fc), I32_AND, ...load(k * 1024)];
}

/** The XOR of `terms`, each of which leaves one i32 on the stack, as a balanced tree. */
function xorTree(terms: number[][]): number[] {
  if (terms.length === 1) return terms[0]!;
  const half = terms.length >> 1;
  return [...xorTree(terms.slice(0, half)), ...xorTree(terms.slice(half)), I32_XOR];
}

/**
 * The next CRC state after `words.length × 4` bytes, the first word already XORed with the
 * state. Only the first word's lookups wait for the previous state, so the others are XORed
 * together first, and everything as a balanced tree: the loop-carried chain is then one lookup
 * and three XORs deep, not a chain of sixteen XORs.
 */
function slice(words: number[]): number[] {
  const last = words.length * 4 - 1;
  const terms = words.flatMap((w, i) => [0, 1, 2, 3].map((j) => lookup(w, j, last - (4 * i + j))));
  if (words.length === 1) return xorTree(terms);
  return [...xorTree(terms.slice(4)), ...xorTree(terms.slice(0, 4)), I32_XOR];
}

/** `update(crc, p, end)`: slicing-by-16, then one 8-byte and one 4-byte step, then bytes. */
function updateBody(): number[] {
  // deno-fmt-ignore
  return [
    1, 5, I32,                                        // five more i32 locals
    ...get(END_), ...i32(16), I32_SUB, ...set(LAST),  // last = end - 16
    BLOCK, VOID,
      ...get(END_), ...i32(16), I32_LT_U, BR_IF, 0,   // end < 16: last wrapped around
      ...get(P), ...get(LAST), I32_GT_U, BR_IF, 0,
      LOOP, VOID,                                     // do {
        ...get(CRC), ...get(P), ...load(0), I32_XOR, ...set(A),
        ...get(P), ...load(4), ...set(B),
        ...get(P), ...load(8), ...set(D),
        ...get(P), ...load(12), ...set(E),
        ...slice([A, B, D, E]), ...set(CRC),
        ...get(P), ...i32(16), I32_ADD, LOCAL_TEE, P,   //   p += 16
        ...get(LAST), I32_LE_U, BR_IF, 0,             // } while (p <= last)
      END,
    END,
    BLOCK, VOID,                                      // if (end - p >= 8)
      ...get(END_), ...get(P), I32_SUB, ...i32(8), I32_LT_U, BR_IF, 0,
      ...get(CRC), ...get(P), ...load(0), I32_XOR, ...set(A),
      ...get(P), ...load(4), ...set(B),
      ...slice([A, B]), ...set(CRC),
      ...get(P), ...i32(8), I32_ADD, ...set(P),
    END,
    BLOCK, VOID,                                      // if (end - p >= 4)
      ...get(END_), ...get(P), I32_SUB, ...i32(4), I32_LT_U, BR_IF, 0,
      ...get(CRC), ...get(P), ...load(0), I32_XOR, ...set(A),
      ...slice([A]), ...set(CRC),
      ...get(P), ...i32(4), I32_ADD, ...set(P),
    END,
    BLOCK, VOID,                                      // while (p < end)
      ...get(P), ...get(END_), I32_GE_U, BR_IF, 0,
      LOOP, VOID,                                     //   crc = T0[(crc ^ *p) & 255] ^ crc >>> 8
        ...get(CRC), ...get(P), I32_LOAD8_U, 0, 0, I32_XOR, ...i32(0xff), I32_AND,
        ...i32(2), I32_SHL, ...load(0),
        ...get(CRC), ...i32(8), I32_SHR_U, I32_XOR, ...set(CRC),
        ...get(P), ...i32(1), I32_ADD, LOCAL_TEE, P,    //   p++
        ...get(END_), I32_LT_U, BR_IF, 0,
      END,
    END,
    ...get(CRC),
    END,
  ];
}

/** A section: its id, then its contents prefixed by their length. */
function section(id: number, contents: number[]): number[] {
  return [id, ...uleb(contents.length), ...contents];
}

/** A name: its length, then its bytes (ASCII here). */
function name(s: string): number[] {
  return [...uleb(s.length), ...[...s].map((ch) => ch.charCodeAt(0))];
}

/** The module's bytes. */
function moduleBytes(): Uint8Array<ArrayBuffer> {
  const body = updateBody();
  const pages = Math.ceil((WASM_INPUT + WASM_CHUNK) / 65536);
  // deno-fmt-ignore
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,     // "\0asm", version 1
    ...section(1, [1, 0x60, 3, I32, I32, I32, 1, I32]), // type 0: (i32, i32, i32) -> i32
    ...section(3, [1, 0]),                              // function 0 has type 0
    ...section(5, [1, 0x00, ...uleb(pages)]),           // memory 0: `pages`, no maximum
    ...section(7, [2,                                   // exports
      ...name("memory"), 0x02, 0,
      ...name("update"), 0x00, 0,
    ]),
    ...section(10, [1, ...uleb(body.length), ...body]), // code of function 0
  ]);
}

/**
 * Compiles and instantiates the kernel synchronously and copies `table`, the 16 × 256 slicing
 * table, into its memory; undefined where WebAssembly is unavailable or refused.
 */
export function crc32cKernel(table: Int32Array): Crc32cKernel | undefined {
  if (typeof WebAssembly !== "object") return undefined;
  try {
    const instance = new WebAssembly.Instance(new WebAssembly.Module(moduleBytes()));
    const memory = instance.exports.memory as WebAssembly.Memory;
    const update = instance.exports.update as Crc32cKernel["update"];
    const v = new DataView(memory.buffer);
    for (let i = 0; i < table.length; i++) v.setInt32(i * 4, table[i]!, true);
    return { heap: new Uint8Array(memory.buffer), update };
  } catch {
    return undefined;
  }
}
