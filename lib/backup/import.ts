/**
 * `walrelay backup import PATH --wal-dir DIR`: stores the output of `pg_basebackup -Ft` (with its
 * manifest) for serving, once DIR is known to hold the WAL from the backup's start to its end.
 *
 * @module
 */

import { join } from "node:path";
import { formatLsn, parseLsn } from "../wal/lsn.ts";
import { WalStore } from "../wal/store.ts";
import { scanBaseArchive, scanTablespaceArchive } from "./archive_info.ts";
import { parseManifest } from "./manifest.ts";
import { backupId, type BackupInfo, BackupStore, type BackupTablespace } from "./store.ts";
import { fileChunks } from "./tar.ts";
import { walRangeFiles } from "./wal_range.ts";
import { pathExists } from "../_io.ts";

/** Options of {@linkcode importBackup}. */
export interface ImportOptions {
  /** The WAL directory the backup is served from. */
  walDir: string;
  /** Log lines. */
  log?: (message: string) => void;
}

/** Copies a file into the backup being written and fsyncs it. */
async function copyInto(src: string, dst: Deno.FsFile): Promise<void> {
  try {
    for await (const chunk of fileChunks(src)) {
      let off = 0;
      while (off < chunk.length) off += await dst.write(chunk.subarray(off));
    }
    await dst.sync();
  } finally {
    dst.close();
  }
}

/**
 * Imports a `pg_basebackup -Ft` directory: `base.tar`, one `<oid>.tar` per tablespace and
 * `backup_manifest` (compressed archives are refused; `pg_wal.tar` is not needed, the WAL comes
 * from the WAL directory).
 *
 * @returns What was stored.
 * @throws {Error} when a file is missing, the manifest does not verify, the backup belongs to
 * another system, or the WAL directory lacks part of its WAL range.
 */
export async function importBackup(path: string, options: ImportOptions): Promise<BackupInfo> {
  const basePath = join(path, "base.tar");
  if (!await pathExists(basePath)) {
    if (
      await pathExists(join(path, "base.tar.gz")) || await pathExists(join(path, "base.tar.lz4"))
    ) {
      throw new Error(
        `"${path}" holds compressed archives: import the output of pg_basebackup -Ft without compression`,
      );
    }
    throw new Error(`"${path}" holds no base.tar: import the output of pg_basebackup -Ft`);
  }
  const manifestPath = join(path, "backup_manifest");
  if (!await pathExists(manifestPath)) {
    throw new Error(`"${path}" holds no backup_manifest: take the backup with a manifest`);
  }
  const manifestBytes = await Deno.readFile(manifestPath);
  const manifest = parseManifest(manifestBytes);
  const base = await scanBaseArchive(fileChunks(basePath));
  const ranges = manifest.walRanges.map((l) => JSON.parse(l));
  const first = ranges[0];
  const last = ranges.at(-1);
  const startLsn = parseLsn(String(first?.["Start-LSN"]));
  const endLsn = parseLsn(String(last?.["End-LSN"]));
  if (startLsn === undefined || endLsn === undefined) {
    throw new Error(`backup_manifest of "${path}" has no WAL-Ranges`);
  }
  if (startLsn !== base.backupLabel.startLsn) {
    throw new Error(
      `backup_manifest starts at ${formatLsn(startLsn)} but backup_label at ${
        formatLsn(base.backupLabel.startLsn)
      }`,
    );
  }
  const timeline = Number(first["Timeline"]);
  const endTimeline = Number(last["Timeline"]);

  const wal = await WalStore.open(options.walDir, { log: options.log ?? (() => {}) });
  if (wal.identity.systemId !== base.systemId) {
    throw new Error(
      `backup is of database system ${base.systemId}, but WAL directory "${options.walDir}" holds WAL of system ${wal.identity.systemId}`,
    );
  }
  const range = { startLsn, timeline, endLsn, endTimeline };
  const found = walRangeFiles(wal, range);
  if ("missing" in found) {
    throw new Error(
      `WAL directory "${options.walDir}" does not hold the backup's WAL from ${
        formatLsn(startLsn)
      } to ${formatLsn(endLsn)}: WAL file "${found.missing}" is missing or incomplete`,
    );
  }

  const tablespaces: BackupTablespace[] = [];
  for (const t of base.tablespaceMap) {
    const p = join(path, `${t.oid}.tar`);
    if (!await pathExists(p)) {
      throw new Error(`"${path}" holds no ${t.oid}.tar for tablespace ${t.oid}`);
    }
    tablespaces.push({ ...t, ...await scanTablespaceArchive(fileChunks(p)) });
  }

  const store = await BackupStore.open(options.walDir, {
    log: options.log ?? (() => {}),
    cleanup: false,
  });
  const id = backupId(timeline, startLsn);
  if (store.get(id)) throw new Error(`backup "${id}" is already stored`);
  const writer = await store.begin();
  try {
    await copyInto(basePath, await writer.create("base.tar"));
    for (const t of tablespaces) {
      await copyInto(join(path, `${t.oid}.tar`), await writer.create(`${t.oid}.tar`));
    }
    await copyInto(manifestPath, await writer.create("backup_manifest"));
    const info: BackupInfo = {
      id,
      label: base.backupLabel.label,
      startLsn,
      timeline,
      endLsn,
      endTimeline,
      major: base.major,
      systemId: base.systemId,
      startTime: base.backupLabel.startTime,
      storedAt: new Date(),
      source: "import",
      tablespaces,
      base: { bytes: base.bytes, estimateKb: base.estimateKb },
      manifest: {
        bytes: manifestBytes.length,
        version: manifest.version,
        algorithm: manifest.files[0]?.algorithm ?? "CRC32C",
      },
    };
    await writer.commit(info);
    return info;
  } catch (e) {
    await writer.abort();
    throw e;
  }
}
