/**
 * Physical replication slots on the relay, persisted in the WAL directory so they survive a
 * restart, as `pg_replslot` does for PostgreSQL.
 *
 * @module
 */

import { PgError, SqlState } from "../pgwire/error.ts";
import { formatLsn, type Lsn, parseLsn } from "../wal/lsn.ts";

/** One slot. */
export interface ReplicationSlot {
  /** Validated slot name. */
  readonly name: string;
  /** Dropped when its session ends. */
  readonly temporary: boolean;
  /** Oldest WAL the slot's client still needs; `undefined` until known. */
  restartLsn: Lsn | undefined;
  /** Timeline of `restartLsn`. */
  restartTli: number | undefined;
  /** Pid of the session using it, or 0. */
  activePid: number;
}

interface SlotFile {
  name: string;
  type: "physical";
  restart_lsn: string | null;
  restart_tli: number | null;
}

/**
 * What a session does with slots. {@linkcode SlotManager} is it on the relay's own thread; a
 * sender thread reaches the one `SlotManager` of the relay through messages, so every answer may
 * be a promise.
 */
export interface SlotAccess {
  /** The slot called `name`, as it is now. */
  get(name: string): ReplicationSlot | undefined | Promise<ReplicationSlot | undefined>;
  /** Creates a slot; 42710 when one of that name exists. */
  create(name: string, init: SlotInit): Promise<ReplicationSlot>;
  /** Drops a slot; 42704 when missing, 55006 when a session other than `pid` uses it. */
  drop(name: string, pid?: number): Promise<void>;
  /** Takes a slot for streaming; 42704 missing, 55006 in use by another session. */
  acquire(name: string, pid: number): ReplicationSlot | Promise<ReplicationSlot>;
  /** Gives back a persistent slot `pid` streamed from. */
  release(name: string, pid: number): void | Promise<void>;
  /** Moves a slot's restart LSN forward to what its client has flushed. */
  advance(slot: ReplicationSlot, flushLsn: Lsn, tli: number): void;
  /** Writes every changed persistent slot. */
  flush(): Promise<void>;
  /** Drops a session's temporary slots when it ends (and releases the ones it used). */
  releaseSession(pid: number): Promise<void>;
}

/** A new slot. */
export interface SlotInit {
  /** Dropped when its session ends. */
  temporary: boolean;
  /** Oldest WAL the slot's client needs, when reserved at once. */
  restartLsn: Lsn | undefined;
  /** Timeline of `restartLsn`. */
  restartTli: number | undefined;
  /** The session that holds it from the start (a temporary slot's creator); 0 for none. */
  activePid?: number;
}

/** Where slots live inside the WAL directory; a name no WAL file can have. */
export const SLOT_DIR = ".walrelay/slots";

/**
 * The relay's slots. Persistent slots are written atomically (temp file, fsync, rename, fsync of
 * the directory), so a crash leaves either the old or the new state.
 *
 * @example
 * ```ts
 * import { SlotManager } from "./slots.ts";
 * import assert from "node:assert/strict";
 * const dir = await Deno.makeTempDir();
 * const slots = await SlotManager.load(dir);
 * await slots.create("s1", { temporary: false, restartLsn: undefined, restartTli: undefined });
 * assert.equal((await SlotManager.load(dir)).get("s1")?.name, "s1");
 * await Deno.remove(dir, { recursive: true });
 * ```
 */
export class SlotManager implements SlotAccess {
  #dir: string;
  #slots = new Map<string, ReplicationSlot>();
  #dirty = new Set<string>();

  private constructor(dir: string) {
    this.#dir = dir;
  }

  /** Loads the slots kept in `walDir`; a directory without any is fine. */
  static async load(walDir: string): Promise<SlotManager> {
    const m = new SlotManager(`${walDir}/${SLOT_DIR}`);
    try {
      for await (const entry of Deno.readDir(m.#dir)) {
        if (!entry.isFile || !entry.name.endsWith(".json")) continue;
        const data = JSON.parse(await Deno.readTextFile(`${m.#dir}/${entry.name}`)) as SlotFile;
        m.#slots.set(data.name, {
          name: data.name,
          temporary: false,
          restartLsn: data.restart_lsn === null ? undefined : parseLsn(data.restart_lsn),
          restartTli: data.restart_tli ?? undefined,
          activePid: 0,
        });
      }
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound)) throw e;
    }
    return m;
  }

  /** The slot called `name`. */
  get(name: string): ReplicationSlot | undefined {
    return this.#slots.get(name);
  }

  /** All slots. */
  list(): ReplicationSlot[] {
    return [...this.#slots.values()];
  }

  /** The oldest restart LSN any slot holds, the retention horizon. */
  oldestRestartLsn(): Lsn | undefined {
    let min: Lsn | undefined;
    for (const s of this.#slots.values()) {
      if (s.restartLsn !== undefined && (min === undefined || s.restartLsn < min)) {
        min = s.restartLsn;
      }
    }
    return min;
  }

  /** Creates a slot; 42710 when one of that name exists. */
  async create(name: string, init: SlotInit): Promise<ReplicationSlot> {
    if (this.#slots.has(name)) {
      throw new PgError(SqlState.DUPLICATE_OBJECT, `replication slot "${name}" already exists`);
    }
    const slot: ReplicationSlot = {
      name,
      temporary: init.temporary,
      restartLsn: init.restartLsn,
      restartTli: init.restartTli,
      activePid: init.activePid ?? 0,
    };
    if (!slot.temporary) await this.#write(slot);
    this.#slots.set(name, slot);
    return slot;
  }

  /**
   * Drops a slot; 42704 when missing, 55006 when a session uses it. The session `pid` may drop
   * a slot it holds itself.
   */
  async drop(name: string, pid = 0): Promise<void> {
    const slot = this.#free(name, pid);
    this.#slots.delete(name);
    this.#dirty.delete(name);
    if (!slot.temporary) {
      try {
        await Deno.remove(`${this.#dir}/${name}.json`);
        await syncDir(this.#dir);
      } catch (e) {
        if (!(e instanceof Deno.errors.NotFound)) throw e;
      }
    }
  }

  /** The slot `name`, unless missing (42704) or held by a session other than `pid` (55006). */
  #free(name: string, pid: number): ReplicationSlot {
    const slot = this.#slots.get(name);
    if (!slot) {
      throw new PgError(SqlState.UNDEFINED_OBJECT, `replication slot "${name}" does not exist`);
    }
    if (slot.activePid !== 0 && slot.activePid !== pid) {
      throw new PgError(
        SqlState.OBJECT_IN_USE,
        `replication slot "${name}" is active for PID ${slot.activePid}`,
      );
    }
    return slot;
  }

  /** Drops a session's temporary slots when it ends (and releases the ones it used). */
  async releaseSession(pid: number): Promise<void> {
    for (const slot of [...this.#slots.values()]) {
      if (slot.activePid !== pid) continue;
      slot.activePid = 0;
      if (slot.temporary) this.#slots.delete(slot.name);
    }
    await this.flush();
  }

  /** Takes a slot for streaming; 42704 missing, 55006 in use by another session. */
  acquire(name: string, pid: number): ReplicationSlot {
    const slot = this.#free(name, pid);
    slot.activePid = pid;
    return slot;
  }

  /**
   * Gives back a persistent slot that `pid` streamed from; a temporary slot stays with its
   * session until it ends.
   */
  release(name: string, pid: number): void {
    const slot = this.#slots.get(name);
    if (slot && !slot.temporary && slot.activePid === pid) slot.activePid = 0;
  }

  /**
   * Moves a slot's restart LSN forward to what its client has flushed (never backwards). The
   * change reaches disk at the next {@linkcode SlotManager.flush}.
   */
  advance(slot: ReplicationSlot, flushLsn: Lsn, tli: number): void {
    if (flushLsn === 0n) return;
    if (slot.restartLsn !== undefined && flushLsn <= slot.restartLsn) return;
    slot.restartLsn = flushLsn;
    slot.restartTli = tli;
    if (!slot.temporary) this.#dirty.add(slot.name);
  }

  /**
   * Moves every slot whose restart LSN lies above `lsn` back to it, on timeline `tli`, and
   * writes the changed slots at once. After the upstream's history forked at `lsn`, WAL above it
   * is no longer this server's, and a slot must not claim it was kept.
   *
   * @returns The names of the slots moved.
   *
   * @example
   * ```ts
   * import { SlotManager } from "./slots.ts";
   * import assert from "node:assert/strict";
   * const dir = await Deno.makeTempDir();
   * const slots = await SlotManager.load(dir);
   * await slots.create("s1", { temporary: false, restartLsn: 0x6000000n, restartTli: 1 });
   * assert.deepEqual(await slots.clamp(0x5000100n, 2), ["s1"]);
   * assert.equal((await SlotManager.load(dir)).get("s1")?.restartLsn, 0x5000100n);
   * await Deno.remove(dir, { recursive: true });
   * ```
   */
  async clamp(lsn: Lsn, tli: number): Promise<string[]> {
    const moved: string[] = [];
    for (const slot of this.#slots.values()) {
      if (slot.restartLsn === undefined || slot.restartLsn <= lsn) continue;
      slot.restartLsn = lsn;
      slot.restartTli = tli;
      if (!slot.temporary) this.#dirty.add(slot.name);
      moved.push(slot.name);
    }
    await this.flush();
    return moved;
  }

  /** Writes every changed persistent slot. */
  async flush(): Promise<void> {
    for (const name of [...this.#dirty]) {
      this.#dirty.delete(name);
      const slot = this.#slots.get(name);
      if (slot && !slot.temporary) await this.#write(slot);
    }
  }

  async #write(slot: ReplicationSlot): Promise<void> {
    await Deno.mkdir(this.#dir, { recursive: true });
    const data: SlotFile = {
      name: slot.name,
      type: "physical",
      restart_lsn: slot.restartLsn === undefined ? null : formatLsn(slot.restartLsn),
      restart_tli: slot.restartTli ?? null,
    };
    const tmp = `${this.#dir}/${slot.name}.json.tmp`;
    const file = await Deno.open(tmp, { write: true, create: true, truncate: true });
    try {
      await file.write(new TextEncoder().encode(JSON.stringify(data) + "\n"));
      await file.syncData();
    } finally {
      file.close();
    }
    await Deno.rename(tmp, `${this.#dir}/${slot.name}.json`);
    await syncDir(this.#dir);
  }
}

async function syncDir(dir: string): Promise<void> {
  const d = await Deno.open(dir, { read: true });
  try {
    await d.sync();
  } finally {
    d.close();
  }
}
