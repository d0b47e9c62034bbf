/**
 * The options of `BASE_BACKUP ( … )`, checked as `parse_basebackup_options` checks them, with
 * PostgreSQL's SQLSTATEs and words; then what walrelay cannot do, refused with 0A000.
 *
 * @module
 */

import { PgError, SqlState } from "../pgwire/error.ts";
import { booleanOption, type GenericOption } from "../replication/command.ts";
import { CHECKSUM_ALGORITHMS, type ChecksumAlgorithm } from "./manifest.ts";

/** The options of one BASE_BACKUP, defaults applied. */
export interface BaseBackupOptions {
  /** `LABEL`; default `base backup`. */
  label: string;
  /** `PROGRESS`: send the size estimates. */
  progress: boolean;
  /** `CHECKPOINT 'fast'` (accepted: the backup exists already). */
  fastCheckpoint: boolean;
  /** `WAIT false`. */
  noWait: boolean;
  /** `WAL`: the backup's WAL goes into `base.tar`'s `pg_wal/`. */
  includeWal: boolean;
  /** `MAX_RATE` in kB/s; 0 = unthrottled. */
  maxRateKb: number;
  /** `TABLESPACE_MAP`: a map file instead of symlink entries. */
  tablespaceMap: boolean;
  /** `MANIFEST`. */
  manifest: "no" | "yes" | "force-encode";
  /** `MANIFEST_CHECKSUMS`; `NONE` without a manifest. */
  manifestChecksums: ChecksumAlgorithm;
  /** Whether the archives go to the client (`TARGET 'client'`) or nowhere (`'blackhole'`). */
  sendToClient: boolean;
  /** Server-side compression. */
  compression: "none" | "gzip" | "lz4" | "zstd";
  /** Its level, when the client gave one (lz4 has only its fast mode here). */
  compressionLevel?: number;
}

/** `MAX_RATE_LOWER` and `MAX_RATE_UPPER` of basebackup.h, in kB/s. */
const MAX_RATE_LOWER = 32;
const MAX_RATE_UPPER = 1048576;

function syntax(message: string): PgError {
  return new PgError(SqlState.SYNTAX_ERROR, message);
}

/** `defGetString`: a number is its digits; no value is an error. */
function stringOf(o: GenericOption): string {
  if (o.value === undefined) throw syntax(`${o.name} requires a parameter`);
  return String(o.value);
}

/** `parse_bool`: unique prefixes of true/false/yes/no, on/off, 1/0. */
function parseBool(text: string): boolean | undefined {
  const v = text.toLowerCase();
  if (v === "") return undefined;
  if ("true".startsWith(v) || "yes".startsWith(v)) return true;
  if ("false".startsWith(v) || "no".startsWith(v)) return false;
  if (v.length >= 2 && "on".startsWith(v)) return true;
  if (v.length >= 2 && "off".startsWith(v)) return false;
  if (v === "1") return true;
  if (v === "0") return false;
  return undefined;
}

/** The levels each algorithm takes, as `validate_compress_specification` words them. */
const LEVELS: Readonly<
  Record<"gzip" | "lz4" | "zstd", { min: number; max: number; dflt: number }>
> = {
  gzip: { min: 1, max: 9, dflt: -1 },
  lz4: { min: 1, max: 12, dflt: 0 },
  zstd: { min: -131072, max: 22, dflt: 3 },
};

/**
 * `compression_detail`, as `parse_compress_specification` and `validate_compress_specification`
 * read it: the whole detail an integer (the level), or `keyword[=value]` items separated by
 * commas: `level`, `workers` (zstd) and, from PostgreSQL 16 on, `long` (zstd; no effect here). The
 * first problem is the error. A level equal to the algorithm's default passes, as in PostgreSQL
 * (gzip's `-1`).
 *
 * @returns The level, when one other than the default was given.
 */
function compressionLevel(
  alg: "gzip" | "lz4" | "zstd",
  detail: string,
  major: number,
): number | undefined {
  const bad = (m: string): PgError => syntax(`invalid compression specification: ${m}`);
  const integer = (key: string, value: string | undefined): number => {
    if (value === undefined) throw bad(`compression option "${key}" requires a value`);
    // strtol: leading blanks and a sign, then digits to the very end.
    if (!/^\s*[+-]?\d+$/.test(value)) {
      throw bad(`value for compression option "${key}" must be an integer`);
    }
    // Kept in an int, as PostgreSQL keeps strtol's result.
    return Number(value) | 0;
  };
  let level: number | undefined;
  let workers = false;
  let long = false;
  if (/^\s*[+-]?\d+$/.test(detail)) {
    level = integer("level", detail);
  } else {
    for (const item of detail.split(",")) {
      const eq = item.indexOf("=");
      const key = eq < 0 ? item : item.slice(0, eq);
      const value = eq < 0 ? undefined : item.slice(eq + 1);
      if (key === "") throw bad("found empty string where a compression option was expected");
      if (key === "level") level = integer(key, value);
      else if (key === "workers") {
        integer(key, value);
        workers = true;
      } else if (key === "long" && major >= 16) {
        if (value !== undefined && parseBool(value) === undefined) {
          throw bad(`value for compression option "${key}" must be a Boolean value`);
        }
        long = true;
      } else throw bad(`unrecognized compression option: "${key}"`);
    }
  }
  const { min, max, dflt } = LEVELS[alg];
  if (level !== undefined && level !== dflt && (level < min || level > max)) {
    throw bad(
      `compression algorithm "${alg}" expects a compression level between ${min} and ${max} (default at ${dflt})`,
    );
  }
  if (alg !== "zstd" && workers) {
    throw bad(`compression algorithm "${alg}" does not accept a worker count`);
  }
  if (alg !== "zstd" && long) {
    throw bad(`compression algorithm "${alg}" does not support long-distance mode`);
  }
  return level === dflt ? undefined : level;
}

/**
 * Checks a BASE_BACKUP's options as PostgreSQL does, then refuses what walrelay does not serve:
 * `TARGET 'server'` and PostgreSQL 17's `INCREMENTAL`.
 *
 * @param options The command's options, as the grammar read them.
 * @param major The PostgreSQL major being served, whose words the errors take (default 18).
 * @throws {PgError} 42601 on a bad or repeated option, 22003 for MAX_RATE out of range, 0A000
 * for what walrelay does not do.
 *
 * @example
 * ```ts
 * import { parseBaseBackupOptions } from "./options.ts";
 * import assert from "node:assert/strict";
 * const o = parseBaseBackupOptions([{ name: "label", value: "x" }, { name: "manifest", value: "yes" }]);
 * assert.equal(o.manifest, "yes");
 * assert.equal(o.manifestChecksums, "CRC32C");
 * assert.throws(() => parseBaseBackupOptions([{ name: "target", value: "server" }]), { code: "0A000" });
 * ```
 */
export function parseBaseBackupOptions(
  options: readonly GenericOption[],
  major = 18,
): BaseBackupOptions {
  const opt: BaseBackupOptions = {
    label: "base backup",
    progress: false,
    fastCheckpoint: false,
    noWait: false,
    includeWal: false,
    maxRateKb: 0,
    tablespaceMap: false,
    manifest: "no",
    manifestChecksums: "CRC32C",
    sendToClient: true,
    compression: "none",
  };
  const seen = new Set<string>();
  let target: string | undefined;
  let targetDetail: string | undefined;
  let compression: string | undefined;
  let compressionDetail: string | undefined;
  let incremental = false;
  for (const o of options) {
    const known = [
      "label",
      "progress",
      "checkpoint",
      "wait",
      "wal",
      "max_rate",
      "tablespace_map",
      "verify_checksums",
      "manifest",
      "manifest_checksums",
      "target",
      "target_detail",
      "compression",
      "compression_detail",
      "incremental",
    ];
    if (!known.includes(o.name)) throw syntax(`unrecognized base backup option: "${o.name}"`);
    if (seen.has(o.name)) throw syntax(`duplicate option "${o.name}"`);
    seen.add(o.name);
    switch (o.name) {
      case "label":
        opt.label = stringOf(o);
        break;
      case "progress":
        opt.progress = booleanOption(o);
        break;
      case "checkpoint": {
        const v = stringOf(o).toLowerCase();
        if (v === "fast") opt.fastCheckpoint = true;
        else if (v !== "spread") throw syntax(`unrecognized checkpoint type: "${stringOf(o)}"`);
        break;
      }
      case "wait":
        opt.noWait = !booleanOption(o);
        break;
      case "wal":
        opt.includeWal = booleanOption(o);
        break;
      case "max_rate": {
        const rate = o.value === undefined ? NaN : Number(o.value);
        if (!Number.isInteger(rate)) throw syntax(`${o.name} requires an integer value`);
        if (rate < MAX_RATE_LOWER || rate > MAX_RATE_UPPER) {
          throw new PgError(
            SqlState.NUMERIC_VALUE_OUT_OF_RANGE,
            `${rate} is outside the valid range for parameter "MAX_RATE" (${MAX_RATE_LOWER} .. ${MAX_RATE_UPPER})`,
          );
        }
        opt.maxRateKb = rate;
        break;
      }
      case "tablespace_map":
        opt.tablespaceMap = booleanOption(o);
        break;
      case "verify_checksums":
        booleanOption(o); // the pages were verified when the backup was taken
        break;
      case "manifest": {
        const v = stringOf(o);
        const b = parseBool(v);
        if (b !== undefined) opt.manifest = b ? "yes" : "no";
        else if (v.toLowerCase() === "force-encode") opt.manifest = "force-encode";
        else throw syntax(`unrecognized manifest option: "${v}"`);
        break;
      }
      case "manifest_checksums": {
        const v = stringOf(o);
        const alg = CHECKSUM_ALGORITHMS.find((a) => a === v.toUpperCase());
        if (!alg) throw syntax(`unrecognized checksum algorithm: "${v}"`);
        opt.manifestChecksums = alg;
        break;
      }
      case "target":
        target = stringOf(o);
        break;
      case "target_detail":
        targetDetail = stringOf(o);
        break;
      case "compression":
        compression = stringOf(o);
        break;
      case "compression_detail":
        compressionDetail = stringOf(o);
        break;
      case "incremental":
        incremental = booleanOption(o);
        break;
    }
  }
  if (opt.manifest === "no") {
    if (seen.has("manifest_checksums")) {
      throw syntax("manifest checksums require a backup manifest");
    }
    opt.manifestChecksums = "NONE";
  }
  if (target === undefined) {
    if (targetDetail !== undefined) throw syntax("target detail cannot be used without target");
  } else if (target === "client" || target === "blackhole") {
    if (targetDetail !== undefined) {
      throw syntax(`target "${target}" does not accept a target detail`);
    }
    opt.sendToClient = target === "client";
  } else if (target === "server") {
    throw new PgError(
      SqlState.FEATURE_NOT_SUPPORTED,
      'base backup target "server" is not supported by walrelay',
      { hint: "Receive the backup with TARGET 'client', as pg_basebackup does by default." },
    );
  } else {
    throw new PgError(SqlState.INVALID_PARAMETER_VALUE, `unrecognized target: "${target}"`);
  }
  if (compressionDetail !== undefined && compression === undefined) {
    throw syntax("compression detail cannot be specified unless compression is enabled");
  }
  if (compression !== undefined) {
    const alg = compression.toLowerCase();
    if (alg === "gzip" || alg === "lz4" || alg === "zstd") {
      opt.compression = alg;
      if (compressionDetail !== undefined) {
        const level = compressionLevel(alg, compressionDetail, major);
        if (level !== undefined) opt.compressionLevel = level;
      }
    } else if (alg !== "none") {
      throw syntax(`unrecognized compression algorithm: "${compression}"`);
    }
  }
  if (incremental) {
    throw new PgError(
      SqlState.FEATURE_NOT_SUPPORTED,
      "incremental backups are not supported by walrelay",
      { hint: "Take a full backup: walrelay serves the full backups it stores." },
    );
  }
  return opt;
}
