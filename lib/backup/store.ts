/**
 * The backup store, `DIR/.walrelay/backups/<id>/`: each base backup's archives exactly as the
 * server sent them (`base.tar`, `<oid>.tar`), its `backup_manifest`, and `backup.json`
 * describing it. A backup is written into a temporary directory, every file fsynced, then
 * renamed into place and the parent fsynced: a directory named by its id is complete and
 * durable, and anything else found at startup is a leftover, removed.
 *
 * @module
 */

import { join } from "node:path";
import { syncDir } from "../upstream/durable_writer.ts";
import { formatLsn, type Lsn, parseLsn } from "../wal/lsn.ts";
import type { TimelineId } from "../wal/segment.ts";

/** Where backups live, relative to the WAL directory. */
export const BACKUP_DIR = ".walrelay/backups";

/** The metadata file of a stored backup. */
export const BACKUP_INFO_FILE = "backup.json";

/** Prefix of directories being written or removed; never served, removed at startup. */
const TEMP_PREFIX = ".tmp-";

/** A user tablespace of a backup, in the order the server sent it. */
export interface BackupTablespace {
  /** The tablespace OID, as text. */
  oid: string;
  /** Its location on the server. */
  location: string;
  /** The archive's size in bytes. */
  bytes: number;
  /** The size PostgreSQL reports for PROGRESS, in kB. */
  estimateKb: number;
}

/** What `backup.json` says about a stored backup. */
export interface BackupInfo {
  /** The directory name: timeline and start LSN. */
  id: string;
  /** `LABEL` of `backup_label`. */
  label: string;
  /** Backup start (the `START WAL LOCATION`). */
  startLsn: Lsn;
  /** Timeline at the start. */
  timeline: TimelineId;
  /** Backup end: WAL up to here makes it consistent. */
  endLsn: Lsn;
  /** Timeline at the end. */
  endTimeline: TimelineId;
  /** PostgreSQL major of the cluster (`PG_VERSION`). */
  major: number;
  /** The cluster's system identifier (from `global/pg_control`). */
  systemId: bigint;
  /** `START TIME` of `backup_label`, as written there. */
  startTime: string;
  /** When the backup was stored. */
  storedAt: Date;
  /** How it came: taken from the upstream, or imported. */
  source: "upstream" | "import";
  /** User tablespaces, in the order sent (the main directory is `base`). */
  tablespaces: BackupTablespace[];
  /** `base.tar`: size in bytes and the PROGRESS estimate in kB. */
  base: { bytes: number; estimateKb: number };
  /** The manifest: size, version, and the file checksum algorithm. */
  manifest: { bytes: number; version: number; algorithm: string };
}

/** The id of a backup: timeline and start LSN, as a WAL file name orders them. */
export function backupId(timeline: TimelineId, startLsn: Lsn): string {
  return `${timeline.toString(16).toUpperCase().padStart(8, "0")}-${
    startLsn.toString(16).toUpperCase().padStart(16, "0")
  }`;
}

function toJson(info: BackupInfo): string {
  return JSON.stringify(
    {
      ...info,
      startLsn: formatLsn(info.startLsn),
      endLsn: formatLsn(info.endLsn),
      systemId: info.systemId.toString(),
      storedAt: info.storedAt.toISOString(),
    },
    null,
    2,
  ) + "\n";
}

function fromJson(text: string): BackupInfo {
  const o = JSON.parse(text);
  const startLsn = parseLsn(o.startLsn);
  const endLsn = parseLsn(o.endLsn);
  if (startLsn === undefined || endLsn === undefined) throw new Error("invalid LSN");
  return {
    ...o,
    startLsn,
    endLsn,
    systemId: BigInt(o.systemId),
    storedAt: new Date(o.storedAt),
  };
}

/** A backup being written: files go into a temporary directory until {@linkcode commit}. */
export class BackupWriter {
  /** The temporary directory. */
  readonly dir: string;
  #store: BackupStore;
  #done = false;

  /** @internal */
  constructor(store: BackupStore, dir: string) {
    this.#store = store;
    this.dir = dir;
  }

  /** Creates (or truncates) a file of the backup; the caller writes, fsyncs and closes it. */
  create(name: string): Promise<Deno.FsFile> {
    return Deno.open(join(this.dir, name), { write: true, create: true, truncate: true });
  }

  /**
   * Makes the backup durable and visible: `backup.json` written and fsynced, the directory
   * fsynced, renamed to its id, the parent fsynced. The caller has fsynced every file.
   */
  async commit(info: BackupInfo): Promise<string> {
    const file = await this.create(BACKUP_INFO_FILE);
    try {
      await file.write(new TextEncoder().encode(toJson(info)));
      await file.sync();
    } finally {
      file.close();
    }
    await syncDir(this.dir);
    const final = join(this.#store.root, info.id);
    try {
      await Deno.stat(final);
      throw new Error(`backup "${info.id}" is already stored`);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    await Deno.rename(this.dir, final);
    await syncDir(this.#store.root);
    this.#done = true;
    this.#store.added(info);
    return final;
  }

  /** Throws the half-written backup away. */
  async abort(): Promise<void> {
    if (this.#done) return;
    this.#done = true;
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

/**
 * The stored backups of one WAL directory.
 *
 * @example
 * ```ts
 * import { BackupStore } from "./store.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const store = await BackupStore.open(dir);
 * assert.deepEqual(store.list(), []);
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class BackupStore {
  /** `DIR/.walrelay/backups`. */
  readonly root: string;
  #backups = new Map<string, BackupInfo>();
  #log: (message: string) => void;

  private constructor(root: string, log: (message: string) => void) {
    this.root = root;
    this.#log = log;
  }

  /**
   * Opens the store of a WAL directory (created with its first backup). Half-written backups (a
   * crash, an upstream gone) are removed here, so they are never served; `cleanup: false` leaves
   * them, for a process beside the relay that owns the directory.
   */
  static async open(
    walDir: string,
    options: { log?: (message: string) => void; cleanup?: boolean } = {},
  ): Promise<BackupStore> {
    const root = join(walDir, BACKUP_DIR);
    const store = new BackupStore(root, options.log ?? (() => {}));
    let entries: Deno.DirEntry[];
    try {
      entries = await Array.fromAsync(Deno.readDir(root));
    } catch (e) {
      // Created with the first backup; a directory served read-only never gets one.
      if (e instanceof Deno.errors.NotFound) return store;
      throw e;
    }
    let removed = false;
    for (const e of entries) {
      if (!e.isDirectory) continue;
      const path = join(root, e.name);
      if (e.name.startsWith(TEMP_PREFIX)) {
        // Only the relay that owns the directory may: another process (an import next to a
        // running relay) could be removing a backup the relay is writing.
        if (options.cleanup === false) continue;
        store.#log(`removing incomplete base backup "${path}"`);
        await Deno.remove(path, { recursive: true });
        removed = true;
        continue;
      }
      try {
        store.#backups.set(e.name, fromJson(await Deno.readTextFile(join(path, BACKUP_INFO_FILE))));
      } catch (err) {
        store.#log(`ignoring base backup "${path}": ${(err as Error).message}`);
      }
    }
    if (removed) await syncDir(root);
    return store;
  }

  /**
   * Rescans the directory for backups stored by another process (`walrelay backup import` next
   * to a running relay) and forgets those removed. Leftovers being written are not touched.
   */
  async refresh(): Promise<void> {
    let names: string[];
    try {
      names = (await Array.fromAsync(Deno.readDir(this.root)))
        .filter((e) => e.isDirectory && !e.name.startsWith(TEMP_PREFIX)).map((e) => e.name);
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) names = [];
      else throw e;
    }
    for (const id of [...this.#backups.keys()]) if (!names.includes(id)) this.#backups.delete(id);
    for (const id of names) {
      if (this.#backups.has(id)) continue;
      try {
        this.#backups.set(
          id,
          fromJson(await Deno.readTextFile(join(this.root, id, BACKUP_INFO_FILE))),
        );
      } catch { /* not complete: an id directory always has its backup.json */ }
    }
  }

  /** The stored backups, oldest first. */
  list(): BackupInfo[] {
    return [...this.#backups.values()].sort((a, b) =>
      a.startLsn === b.startLsn ? a.timeline - b.timeline : a.startLsn < b.startLsn ? -1 : 1
    );
  }

  /** The newest stored backup. */
  newest(): BackupInfo | undefined {
    return this.list().at(-1);
  }

  /** A stored backup by id. */
  get(id: string): BackupInfo | undefined {
    return this.#backups.get(id);
  }

  /** The path of a file of a stored backup. */
  path(id: string, name: string): string {
    return join(this.root, id, name);
  }

  /** The start of the oldest stored backup: WAL from there on must be kept. */
  oldestStartLsn(): Lsn | undefined {
    return this.list()[0]?.startLsn;
  }

  /** Starts writing a new backup into a temporary directory. */
  async begin(): Promise<BackupWriter> {
    await Deno.mkdir(this.root, { recursive: true, mode: 0o700 });
    const dir = join(this.root, `${TEMP_PREFIX}${crypto.randomUUID()}`);
    await Deno.mkdir(dir, { mode: 0o700 });
    return new BackupWriter(this, dir);
  }

  /** @internal A writer committed a backup. */
  added(info: BackupInfo): void {
    this.#backups.set(info.id, info);
  }

  /**
   * Removes a stored backup. It is renamed aside first, so a crash half-way leaves a leftover
   * that the next start removes, never a half-removed backup that looks complete.
   */
  async remove(id: string): Promise<void> {
    if (!this.#backups.delete(id)) return;
    const aside = join(this.root, `${TEMP_PREFIX}removed-${id}`);
    await Deno.rename(join(this.root, id), aside);
    await syncDir(this.root);
    await Deno.remove(aside, { recursive: true });
  }

  /**
   * Keeps the newest `keep` backups and removes the older ones, except those `inUse` names.
   *
   * @returns The ids removed.
   */
  async prune(keep: number, inUse: ReadonlySet<string> = new Set()): Promise<string[]> {
    const all = this.list();
    const removed: string[] = [];
    for (const b of all.slice(0, Math.max(0, all.length - keep))) {
      if (inUse.has(b.id)) continue;
      await this.remove(b.id);
      removed.push(b.id);
      this.#log(`removed base backup "${b.id}" (--base-backups-keep ${keep})`);
    }
    return removed;
  }
}
