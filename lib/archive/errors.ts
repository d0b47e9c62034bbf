/**
 * What can go wrong reading an archive, as facts naming the file. Like the WAL layer's errors
 * these speak no wire protocol: the replication and HTTP layers choose the words a client sees
 * (a damaged archived file is `XX001`, data corrupted).
 *
 * @module
 */

import type { ArchiveFormat } from "./format.ts";

/**
 * Why an archived file could not be turned into plain WAL: no decoder for its format, a file
 * encrypted by the archiving tool, a stream that does not decode, a checksum or size that does
 * not match.
 */
export type ArchiveFormatProblem = "unsupported" | "encrypted" | "corrupt" | "checksum" | "size";

/**
 * An archived file that cannot be served: its format has no decoder here, or its bytes do not
 * decode, or what they decode to is not what its name promises.
 *
 * @example
 * ```ts
 * import { ArchiveFormatError } from "./errors.ts";
 * import assert from "node:assert/strict";
 * const e = new ArchiveFormatError("/a/000000010000000000000003.lzma", "lzma", "unsupported");
 * assert.equal(e.format, "lzma");
 * assert.match(e.message, /no decoder for lzma/);
 * ```
 */
export class ArchiveFormatError extends Error {
  /** The archived file's path. */
  readonly file: string;
  /** Its format, as detected. */
  readonly format: ArchiveFormat;
  /** What is wrong with it. */
  readonly problem: ArchiveFormatProblem;

  /**
   * Creates the error for a file and what is wrong with it.
   *
   * @param file The archived file's path.
   * @param format Its format.
   * @param problem What is wrong with it.
   * @param detail What the decoder or the check said.
   */
  constructor(file: string, format: ArchiveFormat, problem: ArchiveFormatProblem, detail?: string) {
    const what = problem === "unsupported"
      ? `no decoder for ${format} compression`
      : problem === "encrypted"
      ? 'encrypted (OpenSSL "Salted__" format, as pgBackRest\'s repo cipher writes it); ' +
        "walrelay does not decrypt archives"
      : problem === "corrupt"
      ? `${format} data is corrupt`
      : problem === "checksum"
      ? "checksum mismatch"
      : "unexpected size";
    super(`archived WAL file "${file}": ${what}${detail ? `: ${detail}` : ""}`);
    this.name = "ArchiveFormatError";
    this.file = file;
    this.format = format;
    this.problem = problem;
  }
}

/**
 * A directory whose WAL files follow no known layout, or more than one.
 *
 * @example
 * ```ts
 * import { ArchiveLayoutError } from "./errors.ts";
 * import assert from "node:assert/strict";
 * const e = new ArchiveLayoutError("/a", "mixed WAL layouts: plain and pgbackrest");
 * assert.equal(e.dir, "/a");
 * ```
 */
export class ArchiveLayoutError extends Error {
  /** The directory examined. */
  readonly dir: string;

  /**
   * Creates the error for a directory.
   *
   * @param dir The directory examined.
   * @param detail What is wrong with its layout.
   */
  constructor(dir: string, detail: string) {
    super(`WAL directory "${dir}": ${detail}`);
    this.name = "ArchiveLayoutError";
    this.dir = dir;
  }
}
