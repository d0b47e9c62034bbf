/**
 * The relay's base backups as sessions see them: which backup a BASE_BACKUP gets (the newest
 * stored one, or in relay mode a new one read through from the upstream when the newest is too
 * old), which backups are in use, and what `/status` shows.
 *
 * @module
 */

import type { Logger } from "../log.ts";
import { PgError, SqlState } from "../pgwire/error.ts";
import type { Lsn } from "../wal/lsn.ts";
import type { ChecksumAlgorithm } from "./manifest.ts";
import type { BackupProgress, BackupSource } from "./serve.ts";
import { type BackupInfo, BackupStore } from "./store.ts";
import { fileChunks } from "./tar.ts";

/** A backup being taken from the upstream, as the service tracks it. */
export interface BackupInProgress extends BackupSource {
  /** When it began. */
  readonly started: Date;
  /** Bytes received from the upstream so far. */
  readonly bytesReceived: number;
  /** Resolves with what was stored; rejects when the upstream failed. */
  readonly done: Promise<BackupInfo>;
  /** Abandons it (the relay is shutting down): nothing is stored, readers get an error. */
  abort(): void;
}

/** Takes a new backup from the upstream (relay mode). */
export type BackupTaker = (store: BackupStore) => BackupInProgress;

/** Options of {@linkcode BackupService.open}. */
export interface BackupServiceOptions {
  /** The WAL directory. */
  walDir: string;
  /** Log lines. */
  log: Logger;
  /** Relay mode: how to take a backup from the upstream. */
  take?: BackupTaker | undefined;
  /** Serve a stored backup only while younger than this; older ones are read through anew. */
  maxAgeMs?: number;
  /** Keep this many backups (default 2). */
  keep?: number;
  /** Relay mode: take a backup this often, ahead of demand. */
  intervalMs?: number | undefined;
  /**
   * Remove half-written backups when opening (default). A sender thread beside the relay, which
   * may be writing one now, leaves them.
   */
  cleanup?: boolean;
  /**
   * A sender thread: the relay's own thread chooses the backup served (taking one from the
   * upstream when it would for its own sessions, and storing it first) and keeps it from being
   * pruned until `release`. The id names a stored backup.
   */
  acquireStored?: (() => Promise<{ id: string; release: () => void }>) | undefined;
  /** Whether backups can be taken now: the relay holds WAL to serve them with. */
  ready?: (() => boolean) | undefined;
}

/**
 * A stored backup as a {@linkcode BackupSource}.
 *
 * @example
 * ```ts ignore
 * const source = storedSource(store, store.newest()!);
 * ```
 */
export function storedSource(store: BackupStore, info: BackupInfo): BackupSource {
  return {
    id: info.id,
    start: () =>
      Promise.resolve({
        startLsn: info.startLsn,
        timeline: info.timeline,
        tablespaces: info.tablespaces,
        baseEstimateKb: info.base.estimateKb,
        manifestAlgorithm: info.manifest.algorithm as ChecksumAlgorithm,
      }),
    archive: (name) => fileChunks(store.path(info.id, name)),
    manifest: () => Deno.readFile(store.path(info.id, "backup_manifest")),
    end: () => Promise.resolve({ endLsn: info.endLsn, endTimeline: info.endTimeline }),
  };
}

/**
 * The base backups of one relay.
 *
 * @example
 * ```ts ignore
 * const backups = await BackupService.open({ walDir: "/srv/wal", log: logger });
 * const { source, release } = await backups.acquire();
 * ```
 */
export class BackupService {
  /** The store. */
  readonly store: BackupStore;
  /** BASE_BACKUPs being served now. */
  readonly serving: Set<BackupProgress> = new Set();
  /** Counters for `/metrics`. */
  readonly totals = { served: 0, failed: 0, taken: 0, takeFailures: 0 };
  #opts: BackupServiceOptions;
  /** Sources being served, and by how many clients; their ids are never pruned. */
  #inUse = new Map<BackupSource, number>();
  #taking: BackupInProgress | undefined;
  #timer: ReturnType<typeof setInterval> | undefined;

  private constructor(store: BackupStore, opts: BackupServiceOptions) {
    this.store = store;
    this.#opts = opts;
  }

  /** Opens the store (removing half-written backups) and serves from it. */
  static async open(opts: BackupServiceOptions): Promise<BackupService> {
    const store = await BackupStore.open(opts.walDir, {
      log: (m) => opts.log.log("warn", m),
      cleanup: opts.cleanup ?? true,
    });
    const service = new BackupService(store, opts);
    const every = opts.intervalMs;
    if (opts.take && every !== undefined && every > 0) {
      service.#timer = setInterval(() => {
        if (opts.ready && !opts.ready()) return;
        const newest = store.newest();
        if (!newest || Date.now() - newest.storedAt.getTime() >= every) service.takeNow();
      }, Math.min(every, 60_000));
    }
    return service;
  }

  /** Stops taking backups: none ahead of demand, and the one being taken is abandoned. */
  close(): void {
    clearInterval(this.#timer);
    this.#taking?.abort();
  }

  /** The backup being taken from the upstream, if any. */
  get taking(): BackupInProgress | undefined {
    return this.#taking;
  }

  /** The start of the oldest stored backup (or the one being taken): WAL retention keeps it. */
  oldestStartLsn(): Lsn | undefined {
    return this.store.oldestStartLsn();
  }

  /**
   * The backup a BASE_BACKUP gets: the newest stored one when it is young enough (or, in
   * directory mode, whatever its age); otherwise, in relay mode, the one being taken from the
   * upstream, started now if none is. When the upstream cannot begin one, an older stored
   * backup is served rather than none: its WAL is kept, so it still makes a standby. `release`
   * must be called when the client is done.
   *
   * @throws {PgError} 55000 when there is no backup to serve.
   */
  async acquire(): Promise<{ source: BackupSource; release: () => void }> {
    if (this.#opts.acquireStored) return await this.#acquireFromRelay(this.#opts.acquireStored);
    const newest = this.store.newest();
    const maxAge = this.#opts.maxAgeMs ?? Infinity;
    const fresh = newest && Date.now() - newest.storedAt.getTime() < maxAge;
    if (newest && (fresh || !this.#opts.take)) {
      return this.#hold(storedSource(this.store, newest));
    }
    if (!this.#opts.take) {
      throw new PgError(
        SqlState.OBJECT_NOT_IN_PREREQUISITE_STATE,
        "no base backup is stored to serve",
        {
          hint:
            'Store one with "walrelay backup import PATH --wal-dir DIR", or serve in relay mode, where backups are taken from the upstream.',
        },
      );
    }
    const taking = this.takeNow();
    if (!newest) return this.#hold(taking);
    try {
      await taking.start();
      return this.#hold(taking);
    } catch (e) {
      this.#opts.log.log(
        "warn",
        `serving the stored base backup "${newest.id}" instead: ${(e as Error).message}`,
      );
      return this.#hold(storedSource(this.store, newest));
    }
  }

  /** {@linkcode BackupService.acquire} on a sender thread: as the relay's thread decides. */
  async #acquireFromRelay(
    acquireStored: () => Promise<{ id: string; release: () => void }>,
  ): Promise<{ source: BackupSource; release: () => void }> {
    const { id, release } = await acquireStored();
    try {
      if (!this.store.get(id)) await this.store.refresh();
      const info = this.store.get(id);
      if (!info) throw new Error(`base backup "${id}" is not in the store`);
      return { source: storedSource(this.store, info), release };
    } catch (e) {
      release();
      throw e;
    }
  }

  /**
   * The relay's thread's side of {@linkcode BackupServiceOptions.acquireStored}: the backup
   * {@linkcode BackupService.acquire} gives, once stored (a read-through is waited for, whole),
   * held until `release`.
   */
  async acquireStored(): Promise<{ id: string; release: () => void }> {
    const first = await this.acquire();
    if (this.store.get(first.source.id)) return { id: first.source.id, release: first.release };
    // Being read through from the upstream: another thread cannot share the stream, so it
    // waits until the backup is stored and then reads it from the store.
    let id: string | undefined;
    try {
      if ("done" in first.source) id = (await (first.source as BackupInProgress).done).id;
    } catch (e) {
      first.release();
      throw e;
    }
    const stored = (id === undefined ? undefined : this.store.get(id)) ?? this.store.newest();
    if (!stored) {
      first.release();
      throw new PgError(
        SqlState.OBJECT_NOT_IN_PREREQUISITE_STATE,
        "no base backup is stored to serve",
      );
    }
    const held = this.#hold(storedSource(this.store, stored));
    first.release();
    return { id: stored.id, release: held.release };
  }

  /** Starts a backup from the upstream unless one is being taken; returns it. */
  takeNow(): BackupInProgress {
    if (this.#taking) return this.#taking;
    const take = this.#opts.take;
    if (!take) throw new Error("no upstream to take a base backup from");
    const t = take(this.store);
    this.#taking = t;
    t.done.then(
      async (info) => {
        this.totals.taken++;
        this.#opts.log.log("info", "base backup stored", {
          backup: info.id,
          start_lsn: info.startLsn.toString(16),
        });
        await this.prune();
      },
      (e) => {
        this.totals.takeFailures++;
        this.#opts.log.log("warn", `could not take base backup from upstream: ${e.message}`);
      },
    ).finally(() => {
      if (this.#taking === t) this.#taking = undefined;
    });
    return t;
  }

  /** Removes backups beyond `keep`, never one being served. */
  async prune(): Promise<void> {
    // A backup read through is known by its id once stored; a slow client may still be on it.
    const inUse = new Set([...this.#inUse.keys()].map((s) => s.id));
    try {
      await this.store.prune(this.#opts.keep ?? 2, inUse);
    } catch (e) {
      this.#opts.log.log("warn", `could not remove old base backup: ${(e as Error).message}`);
    }
  }

  #hold(source: BackupSource): { source: BackupSource; release: () => void } {
    this.#inUse.set(source, (this.#inUse.get(source) ?? 0) + 1);
    let released = false;
    return {
      source,
      release: () => {
        if (released) return;
        released = true;
        const n = (this.#inUse.get(source) ?? 1) - 1;
        if (n <= 0) this.#inUse.delete(source);
        else this.#inUse.set(source, n);
      },
    };
  }
}

/**
 * Checks the base backup settings of a relay before anything is acquired.
 *
 * @throws {RangeError} naming the setting that is out of range.
 *
 * @example
 * ```ts
 * import { checkBackupSettings } from "./service.ts";
 * import assert from "node:assert/strict";
 * checkBackupSettings({ keep: 2, maxAgeMs: 86_400_000 });
 * assert.throws(() => checkBackupSettings({ keep: 0 }), RangeError);
 * ```
 */
export function checkBackupSettings(
  s: { maxAgeMs?: number; intervalMs?: number; keep?: number; maxRateKb?: number },
): void {
  const check = (name: string, v: number | undefined, ok: (v: number) => boolean, want: string) => {
    if (v !== undefined && !ok(v)) throw new RangeError(`invalid ${name} ${v}: expected ${want}`);
  };
  check("baseBackups.maxAgeMs", s.maxAgeMs, (v) => v >= 0, "zero or more ms");
  check("baseBackups.intervalMs", s.intervalMs, (v) => v > 0, "more than zero ms");
  check("baseBackups.keep", s.keep, (v) => Number.isInteger(v) && v >= 1, "an integer from 1");
  check(
    "baseBackups.maxRateKb",
    s.maxRateKb,
    (v) => Number.isInteger(v) && v >= 32 && v <= 1048576,
    "an integer from 32 to 1048576 kB/s",
  );
}
