/**
 * The relay's replication slots as a sender thread reaches them: every change is made by the one
 * `SlotManager` on the relay's own thread, so a slot is held by one session of any thread and
 * persisted once. Not part of the public API.
 *
 * @module
 */

import type { ReplicationSlot, SlotAccess, SlotInit } from "../replication/slots.ts";
import type { Lsn } from "../wal/lsn.ts";
import type { FromWorker, SlotCall } from "./_protocol.ts";

/**
 * Slots behind messages. `call` asks the relay's thread and resolves with its answer (a copy of
 * the slot); `post` sends a message that needs none.
 *
 * @example
 * ```ts
 * import assert from "node:assert/strict";
 * import { RemoteSlots } from "./remote_slots.ts";
 * const posted: unknown[] = [];
 * const slots = new RemoteSlots(() => Promise.resolve(undefined), (m) => posted.push(m));
 * assert.equal(await slots.get("s1"), undefined);
 * const slot = { name: "s1", temporary: false, restartLsn: 16n, restartTli: 1, activePid: 7 };
 * slots.advance(slot, 32n, 1);
 * assert.deepEqual(posted, [{ type: "advance", name: "s1", lsn: 32n, tli: 1 }]);
 * ```
 */
export class RemoteSlots implements SlotAccess {
  #call: (call: SlotCall) => Promise<unknown>;
  #post: (message: FromWorker) => void;

  /**
   * @param call Asks the relay's thread.
   * @param post Tells the relay's thread.
   */
  constructor(call: (call: SlotCall) => Promise<unknown>, post: (message: FromWorker) => void) {
    this.#call = call;
    this.#post = post;
  }

  /** The slot called `name`, as the relay's thread has it now. */
  async get(name: string): Promise<ReplicationSlot | undefined> {
    return await this.#call({ method: "get", name }) as ReplicationSlot | undefined;
  }

  /** Creates a slot; 42710 when one of that name exists. */
  async create(name: string, init: SlotInit): Promise<ReplicationSlot> {
    return await this.#call({ method: "create", name, init }) as ReplicationSlot;
  }

  /** Drops a slot; 42704 when missing, 55006 when a session other than `pid` uses it. */
  async drop(name: string, pid = 0): Promise<void> {
    await this.#call({ method: "drop", name, pid });
  }

  /** Takes a slot for streaming; 42704 missing, 55006 in use by another session. */
  async acquire(name: string, pid: number): Promise<ReplicationSlot> {
    return await this.#call({ method: "acquire", name, pid }) as ReplicationSlot;
  }

  /** Gives back a persistent slot `pid` streamed from. */
  async release(name: string, pid: number): Promise<void> {
    await this.#call({ method: "release", name, pid });
  }

  /**
   * Moves the slot forward here and on the relay's thread, never backwards; the change is
   * written at the next {@linkcode RemoteSlots.flush}, which the messages' order keeps after it.
   */
  advance(slot: ReplicationSlot, flushLsn: Lsn, tli: number): void {
    if (flushLsn === 0n) return;
    if (slot.restartLsn !== undefined && flushLsn <= slot.restartLsn) return;
    slot.restartLsn = flushLsn;
    slot.restartTli = tli;
    this.#post({ type: "advance", name: slot.name, lsn: flushLsn, tli });
  }

  /** Writes every changed persistent slot. */
  async flush(): Promise<void> {
    await this.#call({ method: "flush" });
  }

  /** Drops a session's temporary slots when it ends (and releases the ones it used). */
  async releaseSession(pid: number): Promise<void> {
    await this.#call({ method: "releaseSession", pid });
  }
}
