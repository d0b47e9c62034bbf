/**
 * Small I/O helpers shared across walrelay: read until full, write until done, join bytes. Not
 * part of the public API.
 *
 * @module
 */

/** Anything with Deno's `read`: files and connections. */
export interface AsyncReader {
  /** Reads up to `p.length` bytes; `null` at EOF. */
  read(p: Uint8Array): Promise<number | null>;
}

/** Anything with Deno's `readSync`. */
export interface SyncReader {
  /** Reads up to `p.length` bytes; `null` at EOF. */
  readSync(p: Uint8Array): number | null;
}

/** Anything with Deno's `write`: files and connections. */
export interface AsyncWriter {
  /** Writes some of `p`, returning how much. */
  write(p: Uint8Array): Promise<number>;
}

/**
 * Reads into `buf` until it is full or the reader ends. `read` may return short counts (pipes,
 * sockets, files at their end); callers that need exact ranges compare the result to the length.
 *
 * @returns How many bytes were read.
 */
export async function readFull(reader: AsyncReader, buf: Uint8Array): Promise<number> {
  let got = 0;
  while (got < buf.length) {
    const n = await reader.read(buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got;
}

/** {@linkcode readFull} with synchronous reads, as the walsender's `pread`. */
export function readFullSync(reader: SyncReader, buf: Uint8Array): number {
  let got = 0;
  while (got < buf.length) {
    // The first read, nearly always the only one, needs no view of its own.
    const n = reader.readSync(got === 0 ? buf : buf.subarray(got));
    if (n === null) break;
    got += n;
  }
  return got;
}

/** The first `n` bytes of a file, fewer when it is shorter. */
export async function readFileHead(path: string, n: number): Promise<Uint8Array> {
  using f = await Deno.open(path);
  const buf = new Uint8Array(n);
  return buf.subarray(0, await readFull(f, buf));
}

/** Writes all of `bytes`: `write` may take only part of them. */
export async function writeAll(writer: AsyncWriter, bytes: Uint8Array): Promise<void> {
  let off = 0;
  // The first write, nearly always the only one, needs no view of its own.
  while (off < bytes.length) off += await writer.write(off === 0 ? bytes : bytes.subarray(off));
}

/** The byte strings one after another, in a new buffer. */
export function concatBytes(...parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  n = 0;
  for (const p of parts) {
    out.set(p, n);
    n += p.length;
  }
  return out;
}

/** Whether a path exists; any error other than NotFound is the caller's. */
export async function pathExists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}
