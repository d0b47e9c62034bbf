import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  buildManifest,
  FileChecksum,
  type Manifest,
  ManifestError,
  manifestTime,
  parseManifest,
} from "./manifest.ts";

const V2: Manifest = {
  version: 2,
  head: ['{ "PostgreSQL-Backup-Manifest-Version": 2,', '"System-Identifier": 7714455575956676260,'],
  files: [
    {
      path: "backup_label",
      size: 225,
      lastModified: "2026-12-01 21:47:51 GMT",
      algorithm: "CRC32C",
      checksum: "4ca6c474",
    },
    {
      path: "global/pg_control",
      size: 8192,
      lastModified: "2026-12-01 21:47:51 GMT",
      algorithm: "CRC32C",
      checksum: "43872087",
    },
  ],
  walRanges: ['{ "Timeline": 1, "Start-LSN": "0/5000028", "End-LSN": "0/5000100" }'],
};

Deno.test("manifest: written in PostgreSQL's layout, its own SHA-256 last", () => {
  const bytes = buildManifest(V2);
  const text = new TextDecoder().decode(bytes);
  assert.ok(text.startsWith('{ "PostgreSQL-Backup-Manifest-Version": 2,\n"System-Identifier": '));
  assert.match(
    text,
    /\n"Files": \[\n\{ "Path": "backup_label", "Size": 225, "Last-Modified": "2026-12-01 21:47:51 GMT", "Checksum-Algorithm": "CRC32C", "Checksum": "4ca6c474" \},\n/,
  );
  assert.ok(text.endsWith('"}\n'));
  const cut = text.indexOf('"Manifest-Checksum"');
  const sum = createHash("sha256").update(text.slice(0, cut)).digest("hex");
  assert.ok(text.includes(`"Manifest-Checksum": "${sum}"}`));
});

Deno.test("manifest: parsed and written again byte for byte; damage is detected", () => {
  const bytes = buildManifest(V2);
  const parsed = parseManifest(bytes);
  assert.equal(parsed.version, 2);
  assert.deepEqual(parsed.files.map((f) => f.path), ["backup_label", "global/pg_control"]);
  assert.deepEqual(buildManifest(parsed), bytes);
  const damaged = bytes.slice();
  damaged[60] = damaged[60]! ^ 1;
  assert.throws(() => parseManifest(damaged), ManifestError);
  assert.throws(() => parseManifest(new TextEncoder().encode("{}\n")), ManifestError);
});

Deno.test("manifest: force-encode writes every path as hex; encoded paths read back", () => {
  const bytes = buildManifest(parseManifest(buildManifest(V2)), { forceEncode: true });
  const text = new TextDecoder().decode(bytes);
  assert.match(text, /"Encoded-Path": "6261636b75705f6c6162656c"/);
  assert.doesNotMatch(text, /"Path"/);
  assert.deepEqual(parseManifest(bytes).files.map((f) => f.path), [
    "backup_label",
    "global/pg_control",
  ]);
});

Deno.test("manifest: checksums as pg_checksum_final writes them", () => {
  const data = new TextEncoder().encode("123456789");
  const crc = new FileChecksum("CRC32C");
  crc.update(data.subarray(0, 4));
  crc.update(data.subarray(4));
  // CRC-32C 0xE3069283, its bytes in little-endian memory order.
  assert.equal(crc.digest(), "839206e3");
  const sha = new FileChecksum("SHA256");
  assert.equal(sha.digest(), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  assert.equal(new FileChecksum("SHA224").digest().length, 56);
  assert.equal(new FileChecksum("NONE").digest(), "");
  assert.equal(manifestTime(1764625671), "2025-12-01 21:47:51 GMT");
});
