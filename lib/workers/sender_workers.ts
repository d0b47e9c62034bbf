/**
 * The relay's sender threads, seen from the relay's own thread: starts them, keeps what is
 * global (the one registry behind `/status`, the slots, the log, the durable end they follow)
 * and speaks to them by messages. Not part of the public API.
 *
 * @module
 */

import type { AuthConfig } from "../auth/authenticator.ts";
import type { BackupService } from "../backup/service.ts";
import type { RelayCounters } from "../http/counters.ts";
import type { Logger } from "../log.ts";
import type { ReplicationLag } from "../replication/lag_tracker.ts";
import { type Sender, SenderRegistry } from "../replication/registry.ts";
import type { SlotManager } from "../replication/slots.ts";
import type { DurableSink } from "../upstream/durable_writer.ts";
import type { Lsn } from "../wal/lsn.ts";
import type { WalStore } from "../wal/store.ts";
import type { WalBlockCacheStats } from "../stream/block_cache.ts";

/** Each counter added up over the threads' reports, all of one shape; `undefined` for none. */
function sumEach<T extends object>(all: T[]): T | undefined {
  if (all.length === 0) return undefined;
  const out: Record<string, number> = {};
  for (const report of all) {
    for (const [key, value] of Object.entries(report)) out[key] = (out[key] ?? 0) + value;
  }
  return out as T;
}
import {
  type ArchiveCacheStats,
  type BackupReport,
  type CacheReport,
  type FromWorker,
  type SlotCall,
  toRemoteError,
  type ToWorker,
  type WorkerInit,
} from "./_protocol.ts";
import { SharedCounters } from "./shared_counters.ts";
import { SharedSegments } from "../archive/shared_segments.ts";
import { SharedTail } from "./shared_tail.ts";
import { Worker } from "node:worker_threads";

/**
 * The young generation of each sender thread's isolate, in MB. V8 lets it grow to 48 MB; every
 * thread's would then stay that large after a burst of streaming, and the threads are what the
 * relay's memory grows with. A smaller one is collected more often, for little CPU, since what
 * a sender allocates per message dies young.
 */
const YOUNG_GENERATION_MB = 8;

/**
 * Relay mode: bytes of the newest durable WAL the threads share. Each thread copies what its
 * caught-up senders send from it, so it needs to cover only the WAL between two looks.
 */
const SHARED_TAIL_BYTES = 16 * 1024 * 1024;

/**
 * Whether `Deno.listen` takes `reusePort` here. Without `--unstable-net` (or `"unstable":
 * ["net"]` in the configuration) Deno ends the process when it is asked for, so ask first;
 * `Deno.listenDatagram` exists exactly when the flag is on.
 *
 * @example
 * ```ts
 * import { reusePortAvailable } from "./sender_workers.ts";
 * console.log(reusePortAvailable());
 * ```
 */
export function reusePortAvailable(): boolean {
  return typeof (Deno as unknown as { listenDatagram?: unknown }).listenDatagram === "function";
}

/** The senders of every sender thread, behind `/status` and `pg_stat_replication`. */
class ThreadsRegistry extends SenderRegistry {
  /** Every thread's senders by pid (pids are unique over the threads). */
  #senders = new Map<number, Sender>();

  /** Takes what a thread reports: senders new or changed, and the pids gone. */
  update(changed: Sender[], gone: number[]): void {
    for (const pid of gone) this.#senders.delete(pid);
    for (const s of changed) this.#senders.set(s.pid, s);
  }

  /** The sender `pid` as last reported. */
  find(pid: number): Sender | undefined {
    return this.#senders.get(pid);
  }

  override get size(): number {
    return this.#senders.size;
  }

  override list(): Sender[] {
    return [...this.#senders.values()].sort((a, b) =>
      a.backendStart.getTime() - b.backendStart.getTime() || a.pid - b.pid
    );
  }

  /** Senders are taken on the sender threads, through the shared counters. */
  override acquire(): Sender | undefined {
    return undefined;
  }
}

/** What the sender threads need from the relay. */
export interface SenderWorkersOptions {
  /** How many threads. */
  count: number;
  /** Everything a thread is started with except its number and the shared counters. */
  init: Omit<WorkerInit, "type" | "worker" | "workers" | "counters" | "tail">;
  /** The relay's logger: the threads' lines go through it. */
  logger: Logger;
  /** Counts accepted connections for `/metrics`. */
  counters: RelayCounters;
  /** The relay's lag tracking, fed with the standbys' replies. */
  lag: ReplicationLag;
  /** The relay's slots: the only ones. */
  slots: SlotManager;
  /** The relay's base backups: it alone takes and prunes them. */
  backups: BackupService;
  /** A thread failed in a way it cannot go on from. */
  onFailure: (e: Error) => void;
}

/** One thread and what the relay knows of it. */
interface Thread {
  n: number;
  worker: Worker;
  stopped: PromiseWithResolvers<void>;
  /** Its last report of BASE_BACKUPs. */
  backups: BackupReport;
  /** Its last report of its caches. */
  caches: CacheReport;
}

/**
 * Sender threads serving replication connections on one address, with one sender limit, one
 * registry and one set of slots. The relay's own thread accepts no replication connection.
 *
 * @example
 * ```ts ignore
 * import { SenderWorkers } from "./sender_workers.ts";
 * const workers = await SenderWorkers.start({ count: 2, init, logger, counters, lag, slots, onFailure });
 * workers.serve(store);
 * await workers.shutdown();
 * ```
 */
export class SenderWorkers {
  /** The senders of every thread. */
  readonly registry: ThreadsRegistry;
  /** The address every thread listens on. */
  readonly address: { hostname: string; port: number };
  #threads: Thread[];
  #options: SenderWorkersOptions;
  /** The store's lines already written, newest last, so N threads saying one are one line. */
  #said = new Set<string>();
  /** Requests every thread answers with `done`, by id. */
  #waits = new Map<number, { left: number; done: () => void }>();
  #nextWait = 1;
  /** Base backups held for a thread's BASE_BACKUP, by hold number. */
  #backupHolds = new Map<number, () => void>();
  #nextHold = 1;
  /** The relay's store's decoded-segment cache, which the threads read archived files through. */
  #segments: SharedSegments | undefined;
  /** The relay's store, whose validations the threads share. */
  #served: WalStore | undefined;
  /** Relay mode: where the durable end and the newest WAL are published to the threads. */
  #tail: SharedTail | undefined;
  #finished: Promise<void>;
  #ending = false;

  private constructor(
    threads: Thread[],
    address: { hostname: string; port: number },
    registry: ThreadsRegistry,
    options: SenderWorkersOptions,
    tail: SharedTail | undefined,
  ) {
    this.#threads = threads;
    this.#tail = tail;
    this.address = address;
    this.registry = registry;
    this.#options = options;
    this.#finished = Promise.all(threads.map((t) => t.stopped.promise)).then(() => {
      for (const t of threads) t.worker.terminate();
    });
  }

  /**
   * Starts `count` threads, one after another: the first binds the address (an ephemeral port
   * when `port` is 0), the others join it. Throws, with every thread ended, when one cannot.
   */
  static async start(options: SenderWorkersOptions): Promise<SenderWorkers> {
    if (!reusePortAvailable()) {
      throw new Error(
        'sender workers need Deno.listen({ reusePort: true }): run with --unstable-net or "unstable": ["net"] in deno.json',
      );
    }
    const counters = SharedCounters.create(10_000 + (Deno.pid % 1000) * 10_000);
    const registry = new ThreadsRegistry(options.init.maxSenders);
    const tail = options.init.relay
      ? SharedTail.create(SHARED_TAIL_BYTES, options.count)
      : undefined;
    const threads: Thread[] = [];
    // Set once every thread listens; messages before that are only log lines.
    const started: { pool?: SenderWorkers } = {};
    let port = options.init.port;
    let hostname = options.init.hostname;
    try {
      for (let n = 1; n <= options.count; n++) {
        // node:worker_threads, for its resource limits; the thread speaks through parentPort.
        const worker = new Worker(new URL("./sender_worker.ts", import.meta.url), {
          resourceLimits: { maxYoungGenerationSizeMb: YOUNG_GENERATION_MB },
        });
        const thread: Thread = {
          n,
          worker,
          stopped: Promise.withResolvers<void>(),
          backups: { serving: [], served: 0, failed: 0 },
          caches: { blocks: undefined, archive: undefined },
        };
        threads.push(thread);
        const listening = Promise.withResolvers<{ port: number; hostname: string }>();
        worker.on("message", (m: FromWorker) => {
          if (m.type === "listening") listening.resolve(m);
          else if (m.type === "failed") listening.reject(new Error(m.message));
          else if (started.pool) started.pool.#receive(thread, m);
          else if (m.type === "log") options.logger.log(m.level, m.message, m.fields);
        });
        worker.on("error", (e: Error) => {
          const err = new Error(`sender thread ${n} failed: ${e.message}`);
          listening.reject(err);
          thread.stopped.resolve();
          if (started.pool) options.onFailure(err);
        });
        const init: WorkerInit = {
          ...options.init,
          type: "init",
          worker: n,
          workers: options.count,
          port,
          counters: counters.buffer,
          tail: tail?.buffer,
        };
        worker.postMessage(init);
        const addr = await listening.promise;
        port = addr.port;
        hostname = addr.hostname;
      }
    } catch (e) {
      for (const t of threads) t.worker.terminate();
      throw e;
    }
    started.pool = new SenderWorkers(threads, { hostname, port }, registry, options, tail);
    return started.pool;
  }

  #post(message: ToWorker): void {
    for (const t of this.#threads) t.worker.postMessage(message);
  }

  #receive(thread: Thread, m: FromWorker): void {
    const o = this.#options;
    switch (m.type) {
      case "log":
        this.#log(m);
        return;
      case "accepted":
        o.counters.connectionAccepted();
        return;
      case "senders":
        this.registry.update(m.changed, m.gone);
        this.#takeBackupReport(thread, m.backups);
        thread.caches = m.caches;
        return;
      case "batch":
        for (const x of m.messages) this.#receive(thread, x);
        return;
      case "reply": {
        // The registry's copy moves at once, so the lag is computed against current positions.
        const s = this.registry.find(m.sender.pid);
        if (s) Object.assign(s, m.sender);
        o.lag.recordReply(s ?? m.sender, m.write, m.flush, m.apply, m.time);
        return;
      }
      case "advance": {
        const slot = o.slots.get(m.name);
        if (slot) o.slots.advance(slot, m.lsn, m.tli);
        return;
      }
      case "call":
        this.#answer(thread, m.id, m.call);
        return;
      case "done": {
        const r = this.#waits.get(m.id);
        if (r && --r.left === 0) {
          this.#waits.delete(m.id);
          r.done();
        }
        return;
      }
      case "failed":
        o.onFailure(new Error(m.message));
        return;
      case "stopped":
        // What it still held of the decoded segments goes back.
        this.#segments?.end(thread.n);
        thread.stopped.resolve();
        return;
    }
  }

  #log(m: Extract<FromWorker, { type: "log" }>): void {
    if (m.once !== undefined) {
      if (this.#said.has(m.once)) return;
      this.#said.add(m.once);
      if (this.#said.size > 1024) this.#said.delete(this.#said.values().next().value!);
    }
    this.#options.logger.log(m.level, m.message, m.fields);
  }

  /** The threads' WAL block caches together, once any thread has one. */
  get blockCacheStats(): WalBlockCacheStats | undefined {
    return sumEach(this.#threads.map((t) => t.caches.blocks).filter((s) => s !== undefined));
  }

  /** The threads' decoded-segment caches together, once any thread has a store. */
  get archiveCacheStats(): ArchiveCacheStats | undefined {
    // Threads reading through the relay's store's cache: that store's figures are the ones.
    if (this.#segments) return undefined;
    return sumEach(this.#threads.map((t) => t.caches.archive).filter((s) => s !== undefined));
  }

  /**
   * A thread's BASE_BACKUPs join the relay's own in `/status` and `/metrics`: those being sent,
   * and the counts, which grow by what the thread added since its last report.
   */
  #takeBackupReport(thread: Thread, report: BackupReport): void {
    const backups = this.#options.backups;
    for (const p of thread.backups.serving) backups.serving.delete(p);
    for (const p of report.serving) backups.serving.add(p);
    backups.totals.served += report.served - thread.backups.served;
    backups.totals.failed += report.failed - thread.backups.failed;
    thread.backups = report;
  }

  /** Runs a thread's call on the relay's slots or base backups. */
  async #answer(thread: Thread, id: number, call: SlotCall): Promise<void> {
    const slots = this.#options.slots;
    let value: unknown;
    try {
      switch (call.method) {
        case "get":
          value = slots.get(call.name);
          break;
        case "create":
          value = await slots.create(call.name, call.init);
          break;
        case "drop":
          await slots.drop(call.name, call.pid);
          break;
        case "acquire":
          value = slots.acquire(call.name, call.pid);
          break;
        case "release":
          slots.release(call.name, call.pid);
          break;
        case "flush":
          await slots.flush();
          break;
        case "releaseSession":
          await slots.releaseSession(call.pid);
          break;
        case "acquireBackup": {
          const { id, release } = await this.#options.backups.acquireStored();
          const hold = this.#nextHold++;
          this.#backupHolds.set(hold, release);
          value = { id, hold };
          break;
        }
        case "releaseBackup":
          this.#backupHolds.get(call.hold)?.();
          this.#backupHolds.delete(call.hold);
          break;
        case "checkSegment":
          value = await this.#served?.checkSegment(call.tli, call.segno);
          break;
        case "segments":
          if (!this.#segments) throw new Error("no store served yet");
          value = await this.#segments.answer(thread.n, call.call);
          break;
      }
      thread.worker.postMessage({ type: "answer", id, value } satisfies ToWorker);
    } catch (e) {
      thread.worker.postMessage({ type: "answer", id, error: toRemoteError(e) } satisfies ToWorker);
    }
  }

  /**
   * The store is open: the threads open it too. In relay mode they never read past the durable
   * end it has now, and learn each advance through {@linkcode SenderWorkers.sink}.
   */
  serve(store: WalStore): Promise<void> {
    this.#served = store;
    if (this.#segments?.cache !== store.decodedSegments) {
      this.#segments = new SharedSegments(store.decodedSegments);
    }
    const durable = this.#options.init.relay
      ? { tli: store.timeline, end: store.endLsn }
      : undefined;
    return this.#everyThread((id) => ({ type: "serve", id, durable }));
  }

  /** Sends a request to every thread; resolves when all have done it (or stopped). */
  #everyThread(message: (id: number) => ToWorker): Promise<void> {
    const id = this.#nextWait++;
    const { promise, resolve } = Promise.withResolvers<void>();
    this.#waits.set(id, { left: this.#threads.length, done: resolve });
    this.#post(message(id));
    // A thread that stops meanwhile never answers.
    return Promise.race([promise, this.#finished]);
  }

  /**
   * What the upstream writer announces to: `store`, then the shared tail, which every thread
   * reads when it looks at the end. A thread whose senders sleep is woken, as the relay's
   * thread wakes its own; the others learn of it when they next look, and cost nothing now.
   */
  sink(store: WalStore): DurableSink {
    const tail = this.#tail;
    return {
      noteDurable: (tli: number, start: Lsn, bytes: Uint8Array) => {
        store.noteDurable(tli, start, bytes);
        if (!tail) return;
        tail.write(tli, start, bytes);
        tail.wakeSleepers();
      },
      refresh: async () => {
        const changed = await store.refresh();
        this.#post({ type: "refresh" });
        return changed;
      },
      get endLsn() {
        return store.endLsn;
      },
      get timeline() {
        return store.timeline;
      },
    };
  }

  /** Every thread begins accepting connections. */
  accept(): void {
    this.#post({ type: "accept" });
  }

  /** Every thread rescans the directory; resolves when all have. */
  refresh(): Promise<void> {
    if (this.#ending) return Promise.resolve();
    return this.#everyThread((id) => ({ type: "refresh", id }));
  }

  /** SIGHUP: the authentication configuration now in force. */
  setAuth(auth: AuthConfig): void {
    this.#post({ type: "auth", auth });
  }

  /** Graceful shutdown: each thread stops accepting and drains its streams to the end. */
  shutdown(): void {
    this.#ending = true;
    this.#post({ type: "shutdown" });
  }

  /** Closes every connection of every thread now. */
  close(): void {
    this.#ending = true;
    this.#post({ type: "close" });
  }

  /** Resolves once every thread has stopped and ended. */
  get finished(): Promise<void> {
    return this.#finished;
  }
}
