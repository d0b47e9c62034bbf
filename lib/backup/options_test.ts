import assert from "node:assert/strict";
import type { GenericOption } from "../replication/command.ts";
import { parseBaseBackupOptions } from "./options.ts";

function fails(options: GenericOption[], code: string, message: string): void {
  assert.throws(() => parseBaseBackupOptions(options), { code, message });
}

Deno.test("BASE_BACKUP options: what pg_basebackup sends, defaults as PostgreSQL's", () => {
  const o = parseBaseBackupOptions([
    { name: "label", value: "pg_basebackup base backup" },
    { name: "progress", value: undefined },
    { name: "checkpoint", value: "fast" },
    { name: "wal", value: undefined },
    { name: "wait", value: 0 },
    { name: "max_rate", value: 32768 },
    { name: "tablespace_map", value: undefined },
    { name: "manifest", value: "yes" },
    { name: "manifest_checksums", value: "sha256" },
    { name: "target", value: "client" },
  ]);
  assert.deepEqual(o, {
    label: "pg_basebackup base backup",
    progress: true,
    fastCheckpoint: true,
    noWait: true,
    includeWal: true,
    maxRateKb: 32768,
    tablespaceMap: true,
    manifest: "yes",
    manifestChecksums: "SHA256",
    sendToClient: true,
    compression: "none",
  });
  const d = parseBaseBackupOptions([]);
  assert.equal(d.label, "base backup");
  assert.equal(d.manifest, "no");
  assert.equal(d.manifestChecksums, "NONE");
  assert.equal(
    parseBaseBackupOptions([{ name: "manifest", value: "force-encode" }]).manifest,
    "force-encode",
  );
  assert.equal(parseBaseBackupOptions([{ name: "manifest", value: "of" }]).manifest, "no");
  assert.equal(
    parseBaseBackupOptions([{ name: "target", value: "blackhole" }]).sendToClient,
    false,
  );
  const gz = parseBaseBackupOptions([
    { name: "compression", value: "gzip" },
    { name: "compression_detail", value: "level=5" },
  ]);
  assert.equal(gz.compression, "gzip");
});

Deno.test("BASE_BACKUP options: refused in PostgreSQL's words", () => {
  fails([{ name: "bogus", value: undefined }], "42601", 'unrecognized base backup option: "bogus"');
  fails(
    [{ name: "label", value: "a" }, { name: "label", value: "b" }],
    "42601",
    'duplicate option "label"',
  );
  fails([{ name: "checkpoint", value: "slow" }], "42601", 'unrecognized checkpoint type: "slow"');
  fails(
    [{ name: "max_rate", value: 31 }],
    "22003",
    '31 is outside the valid range for parameter "MAX_RATE" (32 .. 1048576)',
  );
  fails([{ name: "manifest", value: "maybe" }], "42601", 'unrecognized manifest option: "maybe"');
  fails(
    [{ name: "manifest_checksums", value: "md5" }, { name: "manifest", value: "yes" }],
    "42601",
    'unrecognized checksum algorithm: "md5"',
  );
  fails(
    [{ name: "manifest_checksums", value: "sha256" }],
    "42601",
    "manifest checksums require a backup manifest",
  );
  fails(
    [{ name: "target_detail", value: "x" }],
    "42601",
    "target detail cannot be used without target",
  );
  fails(
    [{ name: "target", value: "blackhole" }, { name: "target_detail", value: "x" }],
    "42601",
    'target "blackhole" does not accept a target detail',
  );
  fails([{ name: "target", value: "tape" }], "22023", 'unrecognized target: "tape"');
  fails(
    [{ name: "compression", value: "brotli" }],
    "42601",
    'unrecognized compression algorithm: "brotli"',
  );
  fails(
    [{ name: "compression_detail", value: "1" }],
    "42601",
    "compression detail cannot be specified unless compression is enabled",
  );
  fails([{ name: "progress", value: "maybe" }], "42601", "progress requires a Boolean value");
  fails([{ name: "label", value: undefined }], "42601", "label requires a parameter");
});

Deno.test("BASE_BACKUP options: zstd with its level; out-of-range levels in PostgreSQL's words", () => {
  const z = parseBaseBackupOptions([
    { name: "compression", value: "zstd" },
    { name: "compression_detail", value: "level=7,workers=2" },
  ]);
  assert.equal(z.compression, "zstd");
  assert.equal(z.compressionLevel, 7);
  fails(
    [{ name: "compression", value: "zstd" }, { name: "compression_detail", value: "level=23" }],
    "42601",
    'invalid compression specification: compression algorithm "zstd" expects a compression level between -131072 and 22 (default at 3)',
  );
  fails(
    [{ name: "compression", value: "gzip" }, { name: "compression_detail", value: "workers=2" }],
    "42601",
    'invalid compression specification: compression algorithm "gzip" does not accept a worker count',
  );
});

Deno.test("BASE_BACKUP options: COMPRESSION_DETAIL read as PostgreSQL 17 reads it", () => {
  const spec = (alg: string, detail: string) => [
    { name: "compression", value: alg },
    { name: "compression_detail", value: detail },
  ];
  // What PostgreSQL 17's walsender answered for each, with TARGET 'blackhole'.
  const gzipRange = 'compression algorithm "gzip" expects a compression level between 1 and 9 ' +
    "(default at -1)";
  const cases: [string, string, string | number | undefined][] = [
    ["gzip", "level=9", 9],
    ["gzip", "1", 1],
    ["gzip", "level=1,level=2", 2],
    ["gzip", "level=-1", undefined],
    ["gzip", "level=0", gzipRange],
    ["gzip", "level=10", gzipRange],
    ["gzip", "10", gzipRange],
    ["gzip", "level=2147483648", gzipRange],
    ["gzip", "level=abc", 'value for compression option "level" must be an integer'],
    ["gzip", "level=", 'value for compression option "level" must be an integer'],
    ["gzip", "level", 'compression option "level" requires a value'],
    ["gzip", "workers=2", 'compression algorithm "gzip" does not accept a worker count'],
    ["gzip", "long", 'compression algorithm "gzip" does not support long-distance mode'],
    ["gzip", "foo=1", 'unrecognized compression option: "foo"'],
    ["gzip", "LEVEL=5", 'unrecognized compression option: "LEVEL"'],
    ["gzip", " level = 5 ", 'unrecognized compression option: " level "'],
    ["gzip", "1,", 'unrecognized compression option: "1"'],
    ["gzip", "", "found empty string where a compression option was expected"],
    ["lz4", "level=12", 12],
    ["lz4", "level=0", undefined],
    [
      "lz4",
      "level=13",
      'compression algorithm "lz4" expects a compression level between 1 and 12 (default at 0)',
    ],
    [
      "lz4",
      "level=-1",
      'compression algorithm "lz4" expects a compression level between 1 and 12 (default at 0)',
    ],
    ["lz4", "workers=2", 'compression algorithm "lz4" does not accept a worker count'],
    ["lz4", "long", 'compression algorithm "lz4" does not support long-distance mode'],
    ["zstd", "level=-1,workers=2,long", -1],
    ["zstd", "level=3", undefined],
    ["zstd", "workers=x", 'value for compression option "workers" must be an integer'],
  ];
  for (const [alg, detail, want] of cases) {
    if (typeof want === "string") {
      fails(spec(alg, detail), "42601", `invalid compression specification: ${want}`);
    } else {
      assert.equal(parseBaseBackupOptions(spec(alg, detail)).compressionLevel, want, detail);
    }
  }
});

Deno.test("BASE_BACKUP options: PostgreSQL 15 knows no long-distance mode, 16 and later do", () => {
  const long = [{ name: "compression", value: "zstd" }, {
    name: "compression_detail",
    value: "long",
  }];
  assert.throws(() => parseBaseBackupOptions(long, 15), {
    code: "42601",
    message: 'invalid compression specification: unrecognized compression option: "long"',
  });
  for (const major of [16, 17, 18]) {
    assert.equal(parseBaseBackupOptions(long, major).compression, "zstd");
  }
  // gzip refuses it in 16+ words, as any unknown option in 15's.
  const gzipLong = [{ name: "compression", value: "gzip" }, {
    name: "compression_detail",
    value: "long",
  }];
  assert.throws(() => parseBaseBackupOptions(gzipLong, 15), {
    message: /unrecognized compression option: "long"/,
  });
  assert.throws(() => parseBaseBackupOptions(gzipLong, 17), {
    message: /does not support long-distance mode/,
  });
});

Deno.test("BASE_BACKUP options: what walrelay does not do is 0A000", () => {
  fails(
    [{ name: "target", value: "server" }],
    "0A000",
    'base backup target "server" is not supported by walrelay',
  );
  fails(
    [{ name: "incremental", value: undefined }],
    "0A000",
    "incremental backups are not supported by walrelay",
  );
});
