/**
 * A failed file operation of the relay's own WAL directory, named as PostgreSQL names it:
 * `could not fdatasync file "…": Input/output error`. These are local faults (a full disk, a
 * failing device), never the upstream's: the receiver reports them apart from connection errors.
 *
 * @module
 */

/** The file operations of the durable writer, as `/metrics` counts their failures. */
export type WalFileOperation =
  | "open"
  | "create"
  | "read"
  | "write"
  | "extend"
  | "truncate"
  | "fsync"
  | "fdatasync"
  | "rename"
  | "fsync_directory";

/**
 * The text `strerror` gives for an OS error, which is what PostgreSQL's `%m` prints. Deno's
 * messages carry it followed by ` (os error N)` and sometimes the call and path
 * (`No such file or directory (os error 2): readdir '/x'`); those are dropped.
 *
 * @example
 * ```ts
 * import { osErrorText } from "./wal_file_error.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   osErrorText(new Error("No space left on device (os error 28)")),
 *   "No space left on device",
 * );
 * ```
 */
export function osErrorText(e: unknown): string {
  const message = e instanceof Error ? e.message : String(e);
  const m = /^(.*?) \(os error \d+\)/.exec(message);
  return m ? m[1]! : message;
}

/**
 * A file operation on the WAL directory that failed. The message is PostgreSQL's: the
 * operation, the file and the OS error.
 *
 * @example
 * ```ts
 * import { WalFileError } from "./wal_file_error.ts";
 * import assert from "node:assert/strict";
 * const e = new WalFileError("fdatasync", "/w/000000010000000000000003.partial", new Error(
 *   "Input/output error (os error 5)",
 * ));
 * assert.equal(
 *   e.message,
 *   'could not fdatasync file "/w/000000010000000000000003.partial": Input/output error',
 * );
 * ```
 */
export class WalFileError extends Error {
  /** What was being done. */
  readonly operation: WalFileOperation;
  /** The file (or directory) it was done to. */
  readonly path: string;

  /**
   * @param operation What failed.
   * @param path The file or directory.
   * @param cause The error Deno threw.
   * @param target For a rename: the new name.
   */
  constructor(operation: WalFileOperation, path: string, cause: unknown, target?: string) {
    super(`${describe(operation, path, target)}: ${osErrorText(cause)}`, { cause });
    this.name = "WalFileError";
    this.operation = operation;
    this.path = path;
  }
}

/** PostgreSQL's wording (fd.c, xlog.c) for each operation. */
function describe(operation: WalFileOperation, path: string, target: string | undefined): string {
  switch (operation) {
    case "open":
      return `could not open file "${path}"`;
    case "create":
      return `could not create file "${path}"`;
    case "read":
      return `could not read file "${path}"`;
    case "write":
    case "extend":
      // XLogFileInit's zero fill says the same as a write of WAL.
      return `could not write to file "${path}"`;
    case "truncate":
      return `could not truncate file "${path}"`;
    case "fsync":
    case "fsync_directory":
      // fd.c says "file" for directories too.
      return `could not fsync file "${path}"`;
    case "fdatasync":
      return `could not fdatasync file "${path}"`;
    case "rename":
      return `could not rename file "${path}" to "${target}"`;
  }
}

/**
 * Runs `fn`, turning what it throws into a {@linkcode WalFileError} for `operation` on `path`.
 *
 * @example
 * ```ts
 * import { fileOp, WalFileError } from "./wal_file_error.ts";
 * import assert from "node:assert/strict";
 * await assert.rejects(
 *   fileOp("open", "/nonexistent/x", () => Deno.open("/nonexistent/x")),
 *   (e) => e instanceof WalFileError && /^could not open file "\/nonexistent\/x": No such/.test(e.message),
 * );
 * ```
 */
export async function fileOp<T>(
  operation: WalFileOperation,
  path: string,
  fn: () => Promise<T>,
  target?: string,
): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof WalFileError) throw e;
    throw new WalFileError(operation, path, e, target);
  }
}
