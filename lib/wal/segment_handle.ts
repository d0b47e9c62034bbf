/**
 * What a segment is read through: an open file, or the plain bytes of an archived file held in
 * memory. Senders read both the same way, so the WAL they stream never depends on how the file
 * was stored.
 *
 * @module
 */

/** The part of `Deno.FsFile` a sender reads a segment with. */
export interface SegmentHandle {
  /** Reads up to `p.length` bytes; `null` at the end. */
  read(p: Uint8Array): Promise<number | null>;
  /** {@linkcode SegmentHandle.read}, synchronously. */
  readSync(p: Uint8Array): number | null;
  /** Moves the read position; returns the new one. */
  seek(offset: number | bigint, whence: Deno.SeekMode): Promise<number>;
  /** {@linkcode SegmentHandle.seek}, synchronously. */
  seekSync(offset: number | bigint, whence: Deno.SeekMode): number;
  /**
   * The file's metadata; for bytes in memory, the archived file's they were decoded from, whose
   * identity (device, inode, size, modification time) identifies the bytes as well.
   */
  statSync(): Deno.FileInfo;
  /** Releases the handle. */
  close(): void;
  /** Releases the handle at the end of a `using` block. */
  [Symbol.dispose](): void;
}

/**
 * A segment's bytes in memory, read like a file. Reads copy out of the bytes, which are shared
 * with every other reader of the segment and never written.
 *
 * @example
 * ```ts
 * import { BytesFile } from "./segment_handle.ts";
 * import assert from "node:assert/strict";
 * const f = new BytesFile(new Uint8Array([1, 2, 3, 4]));
 * f.seekSync(2, Deno.SeekMode.Start);
 * const buf = new Uint8Array(4);
 * assert.equal(f.readSync(buf), 2);
 * assert.deepEqual(buf.subarray(0, 2), new Uint8Array([3, 4]));
 * assert.equal(f.readSync(buf), null);
 * ```
 */
export class BytesFile implements SegmentHandle {
  #bytes: Uint8Array | undefined;
  #info: Deno.FileInfo | undefined;
  #release: (() => void) | undefined;
  #pos = 0;

  /**
   * Wraps a segment's bytes.
   *
   * @param bytes The segment's bytes.
   * @param info The metadata of the file they come from.
   * @param release Called once when the handle is closed: the bytes are not read after.
   */
  constructor(bytes: Uint8Array, info?: Deno.FileInfo, release?: () => void) {
    this.#bytes = bytes;
    this.#info = info;
    this.#release = release;
  }

  /** The metadata given; without any, only the size is known. */
  statSync(): Deno.FileInfo {
    const b = this.#open();
    return this.#info ?? {
      isFile: true,
      isDirectory: false,
      isSymlink: false,
      size: b.length,
      mtime: null,
      atime: null,
      birthtime: null,
      ctime: null,
      dev: 0,
      ino: null,
      mode: null,
      nlink: null,
      uid: null,
      gid: null,
      rdev: null,
      blksize: null,
      blocks: null,
      isBlockDevice: null,
      isCharDevice: null,
      isFifo: null,
      isSocket: null,
    };
  }

  /** Reads up to `p.length` bytes; `null` at the end. */
  readSync(p: Uint8Array): number | null {
    const b = this.#open();
    if (this.#pos >= b.length) return null;
    const n = Math.min(p.length, b.length - this.#pos);
    p.set(b.subarray(this.#pos, this.#pos + n));
    this.#pos += n;
    return n;
  }

  /** {@linkcode BytesFile.readSync}, as a promise. */
  read(p: Uint8Array): Promise<number | null> {
    return Promise.resolve(this.readSync(p));
  }

  /** Moves the read position. */
  seekSync(offset: number | bigint, whence: Deno.SeekMode): number {
    const b = this.#open();
    const base = whence === Deno.SeekMode.Start
      ? 0
      : whence === Deno.SeekMode.Current
      ? this.#pos
      : b.length;
    const pos = base + Number(offset);
    if (pos < 0) throw new RangeError("seek before the start of the segment");
    return this.#pos = pos;
  }

  /** {@linkcode BytesFile.seekSync}, as a promise. */
  seek(offset: number | bigint, whence: Deno.SeekMode): Promise<number> {
    return Promise.resolve(this.seekSync(offset, whence));
  }

  /** Drops the reference to the bytes. */
  close(): void {
    if (!this.#bytes) throw new Deno.errors.BadResource("segment already closed");
    this[Symbol.dispose]();
  }

  /** Drops the reference to the bytes, if still held. */
  [Symbol.dispose](): void {
    this.#bytes = undefined;
    const release = this.#release;
    this.#release = undefined;
    release?.();
  }

  #open(): Uint8Array {
    if (!this.#bytes) throw new Deno.errors.BadResource("segment already closed");
    return this.#bytes;
  }
}
