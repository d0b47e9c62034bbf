/**
 * The `backup_manifest` as PostgreSQL's `backup_manifest.c` writes it: one JSON object per line
 * for each file, the WAL ranges, and a SHA-256 of everything before its own line. Read from the
 * stored manifest and written again for what a client asked (fewer or more files, another
 * checksum algorithm, encoded paths); unchanged, it comes out byte for byte as stored.
 *
 * @module
 */

import { createHash, type Hash } from "node:crypto";
import { crc32c } from "../wal/crc32c.ts";

/** `pg_checksum_type`, as the manifest and the MANIFEST_CHECKSUMS option name them. */
export type ChecksumAlgorithm = "NONE" | "CRC32C" | "SHA224" | "SHA256" | "SHA384" | "SHA512";

/** The algorithms, for option parsing (`pg_checksum_parse_type` is case-insensitive). */
export const CHECKSUM_ALGORITHMS: readonly ChecksumAlgorithm[] = [
  "NONE",
  "CRC32C",
  "SHA224",
  "SHA256",
  "SHA384",
  "SHA512",
];

/** One file of a manifest. */
export interface ManifestFile {
  /** The path relative to the data directory. */
  path: string;
  /** Size in bytes. */
  size: number;
  /** `Last-Modified`, as written (`YYYY-MM-DD HH:MM:SS GMT`). */
  lastModified: string;
  /** The checksum algorithm, `NONE` when the line has none. */
  algorithm: ChecksumAlgorithm;
  /** The checksum, lower-case hex. */
  checksum: string;
  /** The line as stored, reused when nothing about the file changes. */
  line?: string;
}

/** A manifest, split into the parts a server writes one after another. */
export interface Manifest {
  /** `PostgreSQL-Backup-Manifest-Version`: 1 (15) or 2 (17 on). */
  version: number;
  /** The lines before `"Files": [`, as stored. */
  head: string[];
  /** The files, in the order they were sent. */
  files: ManifestFile[];
  /** The `WAL-Ranges` entry lines, as stored, without their separating commas. */
  walRanges: string[];
}

/** A parse failure: the file is not a manifest as PostgreSQL writes it. */
export class ManifestError extends Error {
  /**
   * Creates the error.
   *
   * @param message What is wrong.
   */
  constructor(message: string) {
    super(message);
    this.name = "ManifestError";
  }
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function stripComma(line: string): string {
  return line.endsWith(",") ? line.slice(0, -1) : line;
}

/**
 * Parses a manifest as PostgreSQL writes it, and checks its `Manifest-Checksum`.
 *
 * @throws {ManifestError} when the layout or the checksum is not PostgreSQL's.
 *
 * @example
 * ```ts
 * import { buildManifest, parseManifest } from "./manifest.ts";
 * import assert from "node:assert/strict";
 * const m = { version: 1, head: ['{ "PostgreSQL-Backup-Manifest-Version": 1,'], files: [], walRanges: ['{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }'] };
 * const bytes = buildManifest(m);
 * assert.deepEqual(buildManifest(parseManifest(bytes)), bytes);
 * ```
 */
export function parseManifest(bytes: Uint8Array): Manifest {
  const text = decoder.decode(bytes);
  const lines = text.split("\n");
  const filesAt = lines.indexOf('"Files": [');
  if (filesAt < 1) throw new ManifestError('manifest has no "Files" list');
  const head = lines.slice(0, filesAt);
  const version = Number(/"PostgreSQL-Backup-Manifest-Version": (\d+)/.exec(head[0] ?? "")?.[1]);
  if (!(version >= 1)) throw new ManifestError("manifest has no version");
  const files: ManifestFile[] = [];
  let i = filesAt + 1;
  for (; i < lines.length && lines[i] !== "],"; i++) {
    const line = stripComma(lines[i]!);
    let o: Record<string, unknown>;
    try {
      o = JSON.parse(line);
    } catch {
      throw new ManifestError(`manifest file line ${i + 1} is not a JSON object`);
    }
    const path = typeof o["Path"] === "string"
      ? o["Path"]
      : decoder.decode(Uint8Array.fromHex(String(o["Encoded-Path"] ?? "")));
    files.push({
      path,
      size: Number(o["Size"]),
      lastModified: String(o["Last-Modified"]),
      algorithm: (o["Checksum-Algorithm"] as ChecksumAlgorithm | undefined) ?? "NONE",
      checksum: String(o["Checksum"] ?? ""),
      line,
    });
  }
  if (lines[i + 1] !== '"WAL-Ranges": [') throw new ManifestError('manifest has no "WAL-Ranges"');
  const walRanges: string[] = [];
  for (i += 2; i < lines.length && lines[i] !== "],"; i++) walRanges.push(stripComma(lines[i]!));
  const checksumLine = lines[i + 1] ?? "";
  const m = /^"Manifest-Checksum": "([0-9a-f]{64})"\}$/.exec(checksumLine);
  if (!m) throw new ManifestError("manifest has no Manifest-Checksum");
  const covered = encoder.encode(lines.slice(0, i + 1).join("\n") + "\n");
  const actual = createHash("sha256").update(covered).digest("hex");
  if (actual !== m[1]) {
    throw new ManifestError(`manifest checksum mismatch: stored ${m[1]}, computed ${actual}`);
  }
  return { version, head, files, walRanges };
}

/** Whether `path` must be hex-encoded: PostgreSQL encodes what is not valid UTF-8. */
function fileLine(f: ManifestFile, forceEncode: boolean): string {
  if (f.line !== undefined && !forceEncode) return f.line;
  const name = forceEncode
    ? `"Encoded-Path": "${encoder.encode(f.path).toHex()}"`
    : `"Path": ${JSON.stringify(f.path)}`;
  let line = `{ ${name}, "Size": ${f.size}, "Last-Modified": "${f.lastModified}"`;
  if (f.algorithm !== "NONE") {
    line += `, "Checksum-Algorithm": "${f.algorithm}", "Checksum": "${f.checksum}"`;
  }
  return line + " }";
}

/**
 * Writes a manifest as `backup_manifest.c` does, its own SHA-256 checksum last.
 *
 * @param m The manifest.
 * @param options `forceEncode`: every path as `Encoded-Path` (MANIFEST 'force-encode').
 */
export function buildManifest(m: Manifest, options: { forceEncode?: boolean } = {}): Uint8Array {
  let text = m.head.join("\n") + '\n"Files": [\n';
  text += m.files.map((f) => fileLine(f, options.forceEncode ?? false)).join(",\n");
  if (m.files.length > 0) text += "\n";
  text += '],\n"WAL-Ranges": [\n' + m.walRanges.join(",\n") + "\n],\n";
  const sum = createHash("sha256").update(encoder.encode(text)).digest("hex");
  return encoder.encode(text + `"Manifest-Checksum": "${sum}"}\n`);
}

/**
 * `Last-Modified` as the manifest writes it (`pg_strftime("%Y-%m-%d %H:%M:%S %Z")` in GMT).
 *
 * @example
 * ```ts
 * import { manifestTime } from "./manifest.ts";
 * import assert from "node:assert/strict";
 * assert.equal(manifestTime(0), "1970-01-01 00:00:00 GMT");
 * ```
 */
export function manifestTime(unixSeconds: number): string {
  const iso = new Date(unixSeconds * 1000).toISOString();
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} GMT`;
}

/** A running checksum of one file's content, in one of the manifest's algorithms. */
export class FileChecksum {
  #algorithm: ChecksumAlgorithm;
  #crc = 0;
  #hash: Hash | undefined;

  /**
   * Starts a checksum.
   *
   * @param algorithm The algorithm.
   */
  constructor(algorithm: ChecksumAlgorithm) {
    this.#algorithm = algorithm;
    if (algorithm.startsWith("SHA")) this.#hash = createHash(algorithm.toLowerCase());
  }

  /** Feeds bytes. */
  update(bytes: Uint8Array): void {
    if (this.#hash) this.#hash.update(bytes);
    else if (this.#algorithm === "CRC32C") this.#crc = crc32c(bytes, this.#crc);
  }

  /**
   * The checksum as the manifest writes it. CRC-32C is hex of its bytes in memory order, which
   * `pg_checksum_final` copies out of a little-endian `uint32`.
   *
   * @example
   * ```ts
   * import { FileChecksum } from "./manifest.ts";
   * import assert from "node:assert/strict";
   * assert.equal(new FileChecksum("CRC32C").digest(), "00000000");
   * ```
   */
  digest(): string {
    if (this.#hash) return this.#hash.digest("hex");
    if (this.#algorithm === "NONE") return "";
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, this.#crc, true);
    return b.toHex();
  }
}
