/**
 * Reading one archived WAL file into plain bytes, checked against what its name promises.
 *
 * @module
 */

import { readFileHead } from "../_io.ts";
import { decodeArchived } from "./codec.ts";
import { decodeSegmentInto } from "./_decode_into.ts";
import { ArchiveFormatError } from "./errors.ts";
import { type ArchiveFormat, detectFormat } from "./format.ts";
import type { ArchiveEntry } from "./layout.ts";

/** What {@linkcode readArchivedFile} read. */
export interface ArchivedFile {
  /** The plain bytes. */
  data: Uint8Array;
  /** The format they were decoded from. */
  format: ArchiveFormat;
  /**
   * Whether the compressed stream was whole. A `.partial` may not be (pg_receivewal still writing
   * it); every other file is, or reading it failed.
   */
  complete: boolean;
}

/** Options of {@linkcode readArchivedFile}. */
export interface ReadArchivedOptions {
  /**
   * The WAL segment size: a complete segment must decode to exactly this many bytes, and a
   * `.partial` to at most this many. Default 16 MiB.
   */
  segmentSize?: number;
  /**
   * Where a complete segment may be decoded to, of the segment's size: when the result is
   * there, `data` is this very array (lz4 and zstd files that decode whole to one segment).
   */
  into?: Uint8Array;
}

const PARTIAL = /\.partial$/;
const HISTORY = /\.history$/;

/**
 * Reads an archived WAL file into plain bytes. A segment (not `.partial`, not `.history`) must
 * decode completely to exactly the segment size; pgBackRest's SHA-1 in the name must match the
 * plain bytes; anything else is an {@linkcode ArchiveFormatError} naming the file. A `.partial`
 * yields what decodes, however little.
 *
 * @example
 * ```ts
 * import { readArchivedFile } from "./read_segment.ts";
 * import { gzipSync } from "node:zlib";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const plain = new Uint8Array(1 << 20).fill(7);
 * const path = `${dir}/000000010000000000000003.gz`;
 * await Deno.writeFile(path, gzipSync(plain));
 * const r = await readArchivedFile(
 *   { name: "000000010000000000000003", path, format: "gzip" },
 *   { segmentSize: 1 << 20 },
 * );
 * assert.equal(r.data.length, 1 << 20);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function readArchivedFile(
  entry: ArchiveEntry,
  options: ReadArchivedOptions = {},
): Promise<ArchivedFile> {
  const segmentSize = options.segmentSize ?? 16 * 1024 * 1024;
  const src = await Deno.readFile(entry.path);
  const format = entry.format ?? detectFormat(entry.name, src.subarray(0, 16));
  const isPartial = PARTIAL.test(entry.name);
  const isHistory = HISTORY.test(entry.name);
  const into = options.into;
  // Not where a checksum is due: WebCrypto does not read shared memory.
  const direct = into !== undefined && into.length === segmentSize && !isPartial && !isHistory &&
    entry.expectedSha1 === undefined && await decodeSegmentInto(src, format, into);
  const { data, complete } = direct ? { data: into, complete: true } : await decodeArchived(
    src,
    format,
    { file: entry.path, sizeHint: isHistory ? 1 << 16 : segmentSize },
  );
  if (!isPartial && !complete) {
    throw new ArchiveFormatError(entry.path, format, "corrupt", "compressed stream is cut short");
  }
  if (!isHistory && (isPartial ? data.length > segmentSize : data.length !== segmentSize)) {
    throw new ArchiveFormatError(
      entry.path,
      format,
      "size",
      `decodes to ${data.length} bytes, segment size is ${segmentSize}`,
    );
  }
  if (entry.expectedSha1 !== undefined) {
    const digest = new Uint8Array(
      await crypto.subtle.digest("SHA-1", data as Uint8Array<ArrayBuffer>),
    ).toHex();
    if (digest !== entry.expectedSha1.toLowerCase()) {
      throw new ArchiveFormatError(
        entry.path,
        format,
        "checksum",
        `SHA-1 of the plain bytes is ${digest}, the name says ${entry.expectedSha1}`,
      );
    }
  }
  return { data, format, complete };
}

/**
 * The format of an archived file told from its name and first bytes, without decoding it: what
 * `inspect` and startup checks need to name a file that has no decoder here.
 *
 * @example
 * ```ts
 * import { archivedFormat } from "./read_segment.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const path = `${dir}/000000010000000000000003`;
 * await Deno.writeFile(path, new Uint8Array([0x42, 0x5a, 0x68, 0x39]));
 * assert.equal(await archivedFormat({ name: "000000010000000000000003", path }), "bzip2");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export async function archivedFormat(entry: ArchiveEntry): Promise<ArchiveFormat> {
  return entry.format ?? detectFormat(entry.name, await readFileHead(entry.path, 16));
}
