/**
 * Compression formats of archived WAL files, told by magic bytes or, where a format has none, by
 * the file's extension.
 *
 * @module
 */

/** How an archived WAL file's bytes are encoded. */
export type ArchiveFormat =
  | "plain"
  | "gzip"
  | "lz4"
  | "zstd"
  | "bzip2"
  | "xz"
  | "snappy"
  | "brotli"
  | "lzma";

const EXTENSIONS: Record<string, ArchiveFormat> = {
  gz: "gzip",
  lz4: "lz4",
  zst: "zstd",
  bz2: "bzip2",
  xz: "xz",
  snappy: "snappy",
  br: "brotli",
  lzma: "lzma",
};

/**
 * The format an extension names (without the dot), or `undefined` for none we know.
 *
 * @example
 * ```ts
 * import { formatOfExtension } from "./format.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatOfExtension("zst"), "zstd");
 * assert.equal(formatOfExtension("partial"), undefined);
 * ```
 */
export function formatOfExtension(ext: string): ArchiveFormat | undefined {
  return Object.hasOwn(EXTENSIONS, ext) ? EXTENSIONS[ext] : undefined;
}

const startsWith = (b: Uint8Array, magic: readonly number[]): boolean =>
  b.length >= magic.length && magic.every((m, i) => b[i] === m);

/**
 * The format of a file from its first bytes (six suffice; ten for snappy), or `undefined` when
 * they match no magic. Plain WAL has none of these: a WAL page starts with `xlp_magic`, whose
 * second byte is 0xD0 or 0xD1.
 *
 * @example
 * ```ts
 * import { formatOfMagic } from "./format.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatOfMagic(new Uint8Array([0x1f, 0x8b, 8, 0])), "gzip");
 * assert.equal(formatOfMagic(new Uint8Array([0x10, 0xd1, 2, 0])), undefined);
 * ```
 */
export function formatOfMagic(head: Uint8Array): ArchiveFormat | undefined {
  if (startsWith(head, [0x1f, 0x8b])) return "gzip";
  if (startsWith(head, [0x04, 0x22, 0x4d, 0x18])) return "lz4";
  if (startsWith(head, [0x28, 0xb5, 0x2f, 0xfd])) return "zstd";
  if (startsWith(head, [0x42, 0x5a, 0x68])) return "bzip2";
  if (startsWith(head, [0xfd, 0x37, 0x7a, 0x58, 0x5a, 0x00])) return "xz";
  // The framing format's stream identifier chunk: type 0xff, length 6, "sNaPpY".
  if (startsWith(head, [0xff, 0x06, 0x00, 0x00, 0x73, 0x4e, 0x61, 0x50, 0x70, 0x59])) {
    return "snappy";
  }
  return undefined;
}

/**
 * Whether an archived file is encrypted: OpenSSL's `Salted__` header, which pgBackRest writes
 * before every file of a repository with `repo-cipher-type` set, whatever its compression. WAL,
 * a history file and every compressed format begin otherwise.
 *
 * @param head The file's first bytes (8 are enough).
 * @returns `true` for an encrypted file.
 *
 * @example
 * ```ts
 * import { isEncrypted } from "./format.ts";
 * import assert from "node:assert/strict";
 * assert.equal(isEncrypted(new TextEncoder().encode("Salted__\x01\x02")), true);
 * assert.equal(isEncrypted(new Uint8Array([0x1f, 0x8b, 8, 0])), false);
 * ```
 */
export function isEncrypted(head: Uint8Array): boolean {
  return startsWith(head, [0x53, 0x61, 0x6c, 0x74, 0x65, 0x64, 0x5f, 0x5f]);
}

/**
 * The format of an archived file: its extension when it names one (brotli and lzma have no
 * magic), else its magic bytes, else plain. A file with an extension whose bytes say otherwise is
 * taken by its bytes, since a tool's name for a file can lie but its bytes cannot; an empty file
 * is taken by its name (an empty `.gz.partial` is a gzip stream not yet written).
 *
 * @param name The file's name, e.g. `000000010000000000000003.gz` or `…0003` (Barman).
 * @param head The file's first bytes.
 *
 * @example
 * ```ts
 * import { detectFormat } from "./format.ts";
 * import assert from "node:assert/strict";
 * assert.equal(detectFormat("000000010000000000000003.br", new Uint8Array([0x8b, 0x7f])), "brotli");
 * assert.equal(detectFormat("000000010000000000000003", new Uint8Array([0x28, 0xb5, 0x2f, 0xfd])), "zstd");
 * assert.equal(detectFormat("000000010000000000000003.gz.partial", new Uint8Array(0)), "gzip");
 * assert.equal(detectFormat("000000010000000000000003", new Uint8Array([0x10, 0xd1])), "plain");
 * ```
 */
export function detectFormat(name: string, head: Uint8Array): ArchiveFormat {
  const parts = name.split(".");
  if (parts.at(-1) === "partial") parts.pop();
  const byName = parts.length > 1 ? formatOfExtension(parts.at(-1)!) : undefined;
  const byMagic = formatOfMagic(head);
  if (byName === "brotli" || byName === "lzma") return byName;
  return byMagic ?? byName ?? "plain";
}
