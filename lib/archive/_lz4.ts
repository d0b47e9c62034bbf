/**
 * LZ4 frame decoding (lz4_Frame_format.md, lz4_Block_format.md). Written here rather than taken
 * from npm: the block format is small, and a plain loop over one output buffer decodes WAL faster
 * than the packages measured (see codecs_bench.ts). Not part of the public API.
 *
 * @module
 */

/** Why decoding stopped before the frame's EndMark, or `null` when the frame was complete. */
export type Lz4Stop = null | "truncated" | "corrupt";

/** What {@linkcode decodeLz4Frame} got out of a frame. */
export interface Lz4Result {
  /** The decoded bytes of every complete block. */
  data: Uint8Array;
  /** `null` when the EndMark (and the content checksum, when present) was read. */
  stop: Lz4Stop;
  /** Bytes of input the frame took; what follows is not ours. */
  consumed: number;
  /** Most bytes the frame can decode to: each block's maximum, summed. */
  bound: number;
  /** Whether the frame carries checksums (of its content or of each block): none are checked. */
  checksummed: boolean;
  /** Explains a `corrupt` stop. */
  reason?: string;
}

const BLOCK_MAX = [0, 0, 0, 0, 64 << 10, 256 << 10, 1 << 20, 4 << 20];

/**
 * Decodes the first LZ4 frame of `src`. Decoding stops at the frame's end, so bytes after it are
 * left alone; a frame cut short yields the blocks that arrived whole. Checksums are not verified:
 * pg_receivewal writes none, and the WAL's own CRCs guard what we serve.
 *
 * @param src The file's bytes, starting with the frame magic.
 * @param sizeHint The expected plain size (a segment's size), to allocate once.
 * @param walkOnly Only walk the block headers: find the frame's end and bound, decode nothing.
 * @param into Decode into this buffer, which never grows: a frame that decodes to more is
 *   `corrupt`. Without it, a buffer of `sizeHint` bytes is allocated and grown as needed.
 */
export function decodeLz4Frame(
  src: Uint8Array,
  sizeHint: number,
  walkOnly = false,
  into?: Uint8Array,
): Lz4Result {
  const n = src.length;
  let out = into ?? new Uint8Array(walkOnly ? 0 : Math.max(sizeHint, 1 << 16));
  let op = 0;
  let bound = 0;
  let checksummed = false;
  const fail = (stop: Lz4Stop, ip: number, reason?: string): Lz4Result => {
    const r: Lz4Result = { data: out.subarray(0, op), stop, consumed: ip, bound, checksummed };
    if (reason !== undefined) r.reason = reason;
    return r;
  };
  if (n < 7) return fail("truncated", 0);
  const flg = src[4]!;
  const bd = src[5]!;
  if ((flg >> 6) !== 1) return fail("corrupt", 0, `unsupported LZ4 frame version ${flg >> 6}`);
  const blockChecksum = (flg & 0x10) !== 0;
  const contentSize = (flg & 0x08) !== 0;
  const contentChecksum = (flg & 0x04) !== 0;
  const dictId = (flg & 0x01) !== 0;
  checksummed = blockChecksum || contentChecksum;
  const blockMax = BLOCK_MAX[(bd >> 4) & 7] ?? 0;
  if (blockMax === 0) return fail("corrupt", 0, `invalid LZ4 block maximum size ${(bd >> 4) & 7}`);
  let ip = 7 + (contentSize ? 8 : 0) + (dictId ? 4 : 0);
  if (n < ip) return fail("truncated", 0);
  if (contentSize && !walkOnly) {
    const dv = new DataView(src.buffer, src.byteOffset + 6, 8);
    const size = Number(dv.getBigUint64(0, true));
    if (!into && size > out.length && size <= 1 << 30) out = new Uint8Array(size);
  }
  for (;;) {
    if (ip + 4 > n) return fail("truncated", ip);
    const word = (src[ip]! | (src[ip + 1]! << 8) | (src[ip + 2]! << 16) | (src[ip + 3]! << 24)) >>>
      0;
    if (word === 0) {
      ip += 4;
      if (contentChecksum) {
        if (ip + 4 > n) return fail("truncated", ip);
        ip += 4;
      }
      return { data: out.subarray(0, op), stop: null, consumed: ip, bound, checksummed };
    }
    const size = word & 0x7fffffff;
    if (size > blockMax) {
      return fail("corrupt", ip, `LZ4 block of ${size} bytes exceeds ${blockMax}`);
    }
    const start = ip + 4;
    const end = start + size;
    if (end + (blockChecksum ? 4 : 0) > n) return fail("truncated", ip);
    bound += word & 0x80000000 ? size : blockMax;
    if (walkOnly) {
      ip = end + (blockChecksum ? 4 : 0);
      continue;
    }
    if (!into && op + blockMax > out.length) {
      const bigger = new Uint8Array(Math.max(out.length * 2, op + blockMax));
      bigger.set(out.subarray(0, op));
      out = bigger;
    }
    if (word & 0x80000000) {
      if (op + size > out.length) return fail("corrupt", ip, "LZ4 frame decodes past its buffer");
      out.set(src.subarray(start, end), op);
      op += size;
    } else {
      const got = decodeBlock(src, start, end, out, op);
      if (got < 0) return fail("corrupt", ip, "malformed LZ4 block");
      op = got;
    }
    ip = end + (blockChecksum ? 4 : 0);
  }
}

/**
 * Decodes one LZ4 block from `src[ip, end)` into `out` at `op`. Matches may reach back into
 * earlier blocks of the same frame (linked blocks), which one output buffer makes free.
 *
 * @returns The new output position, or -1 when the block is malformed.
 */
function decodeBlock(
  src: Uint8Array,
  ip: number,
  end: number,
  out: Uint8Array,
  op: number,
): number {
  const outEnd = out.length;
  while (ip < end) {
    const token = src[ip++]!;
    let lit = token >>> 4;
    if (lit === 15) {
      let b;
      do {
        if (ip >= end) return -1;
        b = src[ip++]!;
        lit += b;
      } while (b === 255);
    }
    if (ip + lit > end || op + lit > outEnd) return -1;
    if (lit < 32) {
      for (let i = 0; i < lit; i++) out[op + i] = src[ip + i]!;
    } else {
      out.set(src.subarray(ip, ip + lit), op);
    }
    ip += lit;
    op += lit;
    // The last sequence of a block has literals only.
    if (ip >= end) break;
    if (ip + 2 > end) return -1;
    const offset = src[ip]! | (src[ip + 1]! << 8);
    ip += 2;
    if (offset === 0 || offset > op) return -1;
    let len = (token & 15) + 4;
    if (len === 19) {
      let b;
      do {
        if (ip >= end) return -1;
        b = src[ip++]!;
        len += b;
      } while (b === 255);
    }
    if (op + len > outEnd) return -1;
    let from = op - offset;
    if (len >= 32) {
      // An overlapping match repeats the last `offset` bytes (a run of zeros has offset 1):
      // copied natively in pieces that double, each starting a whole number of periods on.
      for (let done = 0; done < len;) {
        const n = Math.min(done + offset, len - done);
        out.copyWithin(op + done, from, from + n);
        done += n;
      }
      op += len;
    } else {
      // Short matches: a byte loop, which repeats an overlapping match by itself.
      const stop = op + len;
      while (op < stop) out[op++] = out[from++]!;
    }
  }
  return op;
}
