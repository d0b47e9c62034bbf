/**
 * The worker thread that decodes archived files for the segment cache: it reads and decodes a
 * file and hands the plain bytes back in shared memory, so the thread that streams WAL to clients
 * neither decompresses nor copies. Not part of the public API.
 *
 * @module
 */

import { serveUntilIdle } from "../_worker_loop.ts";
import { ArchiveFormatError } from "./errors.ts";
import type { ArchiveEntry } from "./layout.ts";
import { readArchivedFile } from "./read_segment.ts";

const SCHEDSTAT = "/proc/thread-self/schedstat";

/**
 * Only with read permission already granted: a relay run with `--allow-read=DIR` must not
 * stop to prompt for it.
 */
let schedstat = Deno.permissions.querySync({ name: "read", path: SCHEDSTAT }).state === "granted";

/** This thread's CPU time in milliseconds. */
function cpuMs(): number {
  return Number(Deno.readTextFileSync(SCHEDSTAT).split(" ")[0]) / 1e6;
}

/** This thread's CPU time already reported; the thread's start (loading its modules) is not. */
let reported = 0;
try {
  if (schedstat) reported = cpuMs();
} catch {
  schedstat = false;
}

/**
 * Milliseconds of this thread's CPU since its last answer (Linux's `/proc/thread-self/schedstat`),
 * or, where that cannot be read, the wall time of this request since `t0`. Wall time would do
 * poorly: with many clients on few cores, a decode waits for a core most of the time. Counting
 * the thread's whole CPU also keeps two decodes in flight in one thread from counting each other.
 */
function spent(t0: number): number {
  if (schedstat) {
    try {
      const now = cpuMs();
      const d = now - reported;
      reported = now;
      return d;
    } catch {
      schedstat = false;
    }
  }
  return performance.now() - t0;
}

serveUntilIdle(async (request) => {
  const { entry, segmentSize, slab } = request as unknown as {
    entry: ArchiveEntry;
    segmentSize: number;
    slab?: SharedArrayBuffer;
  };
  // The thread's time on the file, read and decoded: what `/metrics` counts as decoding.
  const t0 = performance.now();
  const ms = () => spent(t0);
  try {
    const into = slab && slab.byteLength === segmentSize ? new Uint8Array(slab) : undefined;
    const r = await readArchivedFile(entry, into ? { segmentSize, into } : { segmentSize });
    // Shared memory crosses to the streaming thread, and on to the validation worker, uncopied;
    // a whole segment goes into the buffer lent for it, whose pages are already mapped, decoded
    // there directly when its codec allows.
    if (r.data === into) {
      return { data: into, format: r.format, complete: r.complete, lent: true, ms: ms() };
    }
    const lent = into !== undefined && into.length === r.data.length;
    const data = lent ? into : new Uint8Array(new SharedArrayBuffer(r.data.length));
    data.set(r.data);
    return { data, format: r.format, complete: r.complete, lent, ms: ms() };
  } catch (err) {
    if (!(err instanceof ArchiveFormatError)) throw err;
    const { file, format, problem, message } = err;
    return { formatError: { file, format, problem, message }, ms: ms() };
  }
});
