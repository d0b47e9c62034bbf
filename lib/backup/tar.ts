/**
 * The ustar archives of a base backup as PostgreSQL's `tarCreateHeader` writes them: 512-byte
 * headers, members padded to 512 bytes, two zero blocks at the end. Read member by member from
 * a stream of chunks, so a stored archive and one still arriving from the upstream read alike.
 *
 * @module
 */

/** The tar block size: headers, padding and the trailer come in these. */
export const TAR_BLOCK_SIZE = 512;

/** A member's header, the fields a base backup uses. */
export interface TarHeader {
  /** The member name, `prefix/name` joined; directories end with `/`. */
  name: string;
  /** Permission bits. */
  mode: number;
  /** Owner uid. */
  uid: number;
  /** Owner gid. */
  gid: number;
  /** Content size in bytes (0 for directories and symlinks). */
  size: number;
  /** Modification time, Unix seconds. */
  mtime: number;
  /** `'0'` file, `'5'` directory, `'2'` symlink. */
  typeflag: string;
  /** Symlink target. */
  linkname: string;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function field(block: Uint8Array, start: number, len: number): string {
  const bytes = block.subarray(start, start + len);
  const nul = bytes.indexOf(0);
  return decoder.decode(nul < 0 ? bytes : bytes.subarray(0, nul));
}

function octal(block: Uint8Array, start: number, len: number): number {
  // GNU base-256 for sizes of 8 GB and more: the high bit of the first byte is set.
  if ((block[start]! & 0x80) !== 0) {
    let v = 0;
    for (let i = start + 1; i < start + len; i++) v = v * 256 + block[i]!;
    return v;
  }
  const text = field(block, start, len).trim();
  return text === "" ? 0 : parseInt(text, 8);
}

/** Whether a 512-byte block is all zeros (half of the trailer). */
export function isZeroBlock(block: Uint8Array): boolean {
  for (let i = 0; i < TAR_BLOCK_SIZE; i++) if (block[i] !== 0) return false;
  return true;
}

/**
 * Reads a ustar header block.
 *
 * @throws {Error} when the checksum does not match (not a tar header).
 *
 * @example
 * ```ts
 * import { buildTarHeader, parseTarHeader } from "./tar.ts";
 * import assert from "node:assert/strict";
 * const h = { name: "PG_VERSION", mode: 0o600, uid: 0, gid: 0, size: 3, mtime: 1, typeflag: "0", linkname: "" };
 * assert.deepEqual(parseTarHeader(buildTarHeader(h)), h);
 * ```
 */
export function parseTarHeader(block: Uint8Array): TarHeader {
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK_SIZE; i++) sum += i >= 148 && i < 156 ? 32 : block[i]!;
  if (sum !== octal(block, 148, 8)) throw new Error("invalid tar header checksum");
  const name = field(block, 0, 100);
  const prefix = field(block, 345, 155);
  return {
    name: prefix ? `${prefix}/${name}` : name,
    mode: octal(block, 100, 8),
    uid: octal(block, 108, 8),
    gid: octal(block, 116, 8),
    size: octal(block, 124, 12),
    mtime: octal(block, 136, 12),
    typeflag: String.fromCharCode(block[156]!),
    linkname: field(block, 157, 100),
  };
}

function putOctal(block: Uint8Array, start: number, len: number, value: number): void {
  // `print_tar_number`: digits, then a space, as PostgreSQL writes every numeric field.
  const text = value.toString(8).padStart(len - 1, "0") + " ";
  block.set(encoder.encode(text), start);
}

/**
 * Builds a ustar header as PostgreSQL's `tarCreateHeader` does: octal fields ending in a space,
 * `ustar\0` `00`, owner names `postgres`, names over 100 bytes split into the prefix.
 *
 * @example
 * ```ts
 * import { buildTarHeader } from "./tar.ts";
 * import assert from "node:assert/strict";
 * const block = buildTarHeader({ name: "pg_wal/", mode: 0o700, uid: 0, gid: 0, size: 0, mtime: 0, typeflag: "5", linkname: "" });
 * assert.equal(block.length, 512);
 * ```
 */
export function buildTarHeader(h: TarHeader): Uint8Array {
  const block = new Uint8Array(TAR_BLOCK_SIZE);
  const name = encoder.encode(h.name);
  if (name.length <= 100) {
    block.set(name, 0);
  } else {
    // Split at a slash so that the name fits in 100 bytes and the prefix in 155.
    const text = h.name;
    let cut = text.lastIndexOf("/", text.length - 2);
    while (cut > 0 && encoder.encode(text.slice(cut + 1)).length > 100) {
      cut = text.lastIndexOf("/", cut - 1);
    }
    block.set(encoder.encode(text.slice(cut + 1)), 0);
    block.set(encoder.encode(text.slice(0, cut)).subarray(0, 155), 345);
  }
  putOctal(block, 100, 8, h.mode & 0o7777);
  putOctal(block, 108, 8, h.uid);
  putOctal(block, 116, 8, h.gid);
  putOctal(block, 124, 12, h.typeflag === "0" ? h.size : 0);
  putOctal(block, 136, 12, h.mtime);
  block.fill(32, 148, 156);
  block[156] = h.typeflag.charCodeAt(0);
  block.set(encoder.encode(h.linkname).subarray(0, 100), 157);
  block.set(encoder.encode("ustar\u000000"), 257);
  block.set(encoder.encode("postgres"), 265);
  block.set(encoder.encode("postgres"), 297);
  putOctal(block, 329, 8, 0);
  putOctal(block, 337, 8, 0);
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK_SIZE; i++) sum += block[i]!;
  putOctal(block, 148, 8, sum);
  return block;
}

/** The zero padding after `size` bytes of content, up to the next block. */
export function paddingAfter(size: number): number {
  return (TAR_BLOCK_SIZE - (size % TAR_BLOCK_SIZE)) % TAR_BLOCK_SIZE;
}

/** Reads exact byte counts out of a stream of chunks of any size. */
export class ChunkReader {
  #source: AsyncIterator<Uint8Array>;
  #chunk: Uint8Array = new Uint8Array(0);
  #done = false;

  /**
   * Reads from a stream of chunks.
   *
   * @param source The chunks.
   */
  constructor(source: AsyncIterable<Uint8Array>) {
    this.#source = source[Symbol.asyncIterator]();
  }

  /** Up to `max` bytes (fewer at a chunk's end); an empty array at the end of the stream. */
  async read(max: number): Promise<Uint8Array> {
    while (this.#chunk.length === 0 && !this.#done) {
      const r = await this.#source.next();
      if (r.done) this.#done = true;
      else this.#chunk = r.value;
    }
    const out = this.#chunk.subarray(0, max);
    this.#chunk = this.#chunk.subarray(out.length);
    return out;
  }

  /** Exactly `n` bytes, copied.
   *
   * @throws {Error} when the stream ends first.
   */
  async readExact(n: number): Promise<Uint8Array> {
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const part = await this.read(n - filled);
      if (part.length === 0) throw new Error("unexpected end of tar archive");
      out.set(part, filled);
      filled += part.length;
    }
    return out;
  }

  /** Stops the source early. */
  async cancel(): Promise<void> {
    await this.#source.return?.();
  }
}

/** One step through an archive. */
export type TarEvent =
  /** A member begins; its content follows as `data` events, then `padding`. */
  | { kind: "member"; header: TarHeader; block: Uint8Array }
  /** A piece of the current member's content. */
  | { kind: "data"; bytes: Uint8Array }
  /** The zero padding after a member's content (only when not empty). */
  | { kind: "padding"; bytes: Uint8Array }
  /** The trailer: the two zero blocks, and whatever else followed them. */
  | { kind: "end"; bytes: Uint8Array };

/**
 * Walks an archive: each member's header, its content in pieces of at most `maxChunk` bytes,
 * its padding, and the trailer.
 *
 * @example
 * ```ts
 * import { buildTarHeader, tarEvents } from "./tar.ts";
 * import assert from "node:assert/strict";
 * const h = buildTarHeader({ name: "x", mode: 0o600, uid: 0, gid: 0, size: 2, mtime: 0, typeflag: "0", linkname: "" });
 * const tar = new Uint8Array(512 * 4);
 * tar.set(h, 0);
 * tar.set([104, 105], 512);
 * const kinds = (await Array.fromAsync(tarEvents(ReadableStream.from([tar])))).map((e) => e.kind);
 * assert.deepEqual(kinds, ["member", "data", "padding", "end"]);
 * ```
 */
export async function* tarEvents(
  source: AsyncIterable<Uint8Array>,
  maxChunk = 32768,
): AsyncGenerator<TarEvent> {
  const reader = new ChunkReader(source);
  try {
    while (true) {
      const block = await reader.readExact(TAR_BLOCK_SIZE);
      if (isZeroBlock(block)) {
        const second = await reader.readExact(TAR_BLOCK_SIZE);
        const parts = [block, second];
        // Anything after the trailer is kept, so the archive's bytes pass through whole.
        for (let p = await reader.read(maxChunk); p.length > 0; p = await reader.read(maxChunk)) {
          parts.push(p.slice());
        }
        const bytes = new Uint8Array(parts.reduce((s, p) => s + p.length, 0));
        let at = 0;
        for (const p of parts) {
          bytes.set(p, at);
          at += p.length;
        }
        yield { kind: "end", bytes };
        return;
      }
      const header = parseTarHeader(block);
      yield { kind: "member", header, block };
      const size = header.typeflag === "0" || header.typeflag === "\0" ? header.size : 0;
      let left = size;
      while (left > 0) {
        const piece = await reader.read(Math.min(left, maxChunk));
        if (piece.length === 0) throw new Error("unexpected end of tar archive");
        left -= piece.length;
        yield { kind: "data", bytes: piece };
      }
      const pad = paddingAfter(size);
      if (pad > 0) yield { kind: "padding", bytes: await reader.readExact(pad) };
    }
  } finally {
    await reader.cancel();
  }
}

/**
 * The chunks of a file, as an async iterable, in pieces of `chunk` bytes. A piece is valid until
 * the next one is asked for: copy what must outlive that.
 *
 * Reads are synchronous, as the WAL sender's are: a read from the page cache costs less than a
 * hop through the runtime's thread pool, and keeps the sender on one core beside its client.
 *
 * @example
 * ```ts ignore
 * for await (const piece of fileChunks("base.tar")) console.log(piece.length);
 * ```
 */
export async function* fileChunks(path: string, chunk = 1 << 19): AsyncGenerator<Uint8Array> {
  using file = await Deno.open(path, { read: true });
  const buf = new Uint8Array(chunk);
  while (true) {
    const n = file.readSync(buf);
    if (n === null) return;
    yield buf.subarray(0, n);
  }
}
