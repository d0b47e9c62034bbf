/**
 * The worker thread that decodes archived files for the segment cache: it reads and decodes a
 * file and hands the plain bytes back in shared memory, so the thread that streams WAL to clients
 * neither decompresses nor copies. Once idle for a while it says so and ends, so it never keeps
 * the process alive. Not part of the public API.
 *
 * @module
 */

import { ArchiveFormatError } from "./errors.ts";
import type { ArchiveEntry } from "./layout.ts";
import { readArchivedFile } from "./read_segment.ts";

/** How long an idle worker waits for more work before it ends. */
const IDLE_MS = 500;

const scope = self as unknown as {
  onmessage: (e: MessageEvent) => void;
  postMessage(message: unknown): void;
  close(): void;
};

let inFlight = 0;
let idle: ReturnType<typeof setTimeout> | undefined;

scope.onmessage = async (e: MessageEvent) => {
  const { id, entry, segmentSize } = e.data as {
    id: number;
    entry: ArchiveEntry;
    segmentSize: number;
  };
  clearTimeout(idle);
  inFlight++;
  try {
    const r = await readArchivedFile(entry, { segmentSize });
    // Shared memory crosses to the streaming thread, and on to the validation worker, uncopied.
    const data = new Uint8Array(new SharedArrayBuffer(r.data.length));
    data.set(r.data);
    scope.postMessage({ id, data, format: r.format, complete: r.complete });
  } catch (err) {
    if (err instanceof ArchiveFormatError) {
      scope.postMessage({
        id,
        formatError: {
          file: err.file,
          format: err.format,
          problem: err.problem,
          message: err.message,
        },
      });
    } else {
      const { name, message } = err instanceof Error ? err : new Error(String(err));
      scope.postMessage({ id, error: { name, message } });
    }
  } finally {
    if (--inFlight === 0) {
      idle = setTimeout(() => {
        scope.postMessage({ bye: true });
        scope.close();
      }, IDLE_MS);
    }
  }
};
