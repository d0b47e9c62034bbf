/**
 * A sender thread of the relay: listens on the relay's address beside the other sender threads
 * (`reusePort`: the kernel spreads the connections) and runs their sessions, exactly as the
 * relay's own thread does with one worker. What is global stays with the relay's thread and is
 * reached through messages and shared memory: the durable end (announced, with the WAL itself,
 * as it advances), the sender and connection limits and the pids (shared counters), the slots
 * (asked for), the registry behind `/status` (told), the log. Not part of the public API.
 *
 * @module
 */

import { type AuthConfig, createAuthenticator } from "../auth/authenticator.ts";
import { BackupService } from "../backup/service.ts";
import type { Logger } from "../log.ts";
import { TlsBridge } from "../pgwire/tls_bridge.ts";
import { type Lags, preciseNow, ReplicationLag } from "../replication/lag_tracker.ts";
import { NotYetAccepting } from "../replication/not_yet_accepting.ts";
import { type Sender, SenderRegistry, type SenderState } from "../replication/registry.ts";
import { Session, type SessionContext } from "../replication/session.ts";
import { createRunBuffers } from "../replication/streaming.ts";
import { refuseTooManyClients } from "../replication/too_many_clients.ts";
import { WAL_BLOCK_CACHE_BYTES, WalBlockCache } from "../stream/block_cache.ts";
import type { Lsn } from "../wal/lsn.ts";
import { WalStore } from "../wal/store.ts";
import { RescanScheduler } from "../wal/_rescan_scheduler.ts";
import { join } from "../wal/_path.ts";
import {
  type AdvanceMessage,
  type BackupReport,
  type CacheReport,
  type DurableEnd,
  fromRemoteError,
  type FromWorker,
  type RemoteError,
  type ReplyMessage,
  type SlotCall,
  type ToWorker,
  type WorkerInit,
} from "./_protocol.ts";
import { RemoteSlots } from "./remote_slots.ts";
import { RemoteSegments } from "../archive/shared_segments.ts";
import type { SegmentCheck } from "../wal/segment_validation.ts";
import { SharedCounters } from "./shared_counters.ts";
import { SharedTail } from "./shared_tail.ts";
import { parentPort } from "node:worker_threads";

/**
 * How often the live senders' progress is told to the relay's thread, and with it the standbys'
 * replies and the slots' advances: it needs the latest positions (lag, `pg_stat_replication`,
 * restart_lsn), not a wake-up for every reply. Waking a thread costs about as much as sending a
 * commit to a standby.
 */
const REPORT_MS = 100;

/**
 * Relay mode: bytes of the newest durable WAL a thread copies from the shared tail and keeps for
 * its caught-up senders; one further behind reads the files, as beyond the relay's own tail.
 */
const THREAD_TAIL_BYTES = 8 * 1024 * 1024;

/** The relay's thread, which started this one with node:worker_threads. */
const scope = parentPort!;

/** Replies and advances not yet told, the latest per sender and per slot, oldest first. */
let batch = new Map<string, ReplyMessage | AdvanceMessage>();

function flushBatch(): void {
  if (batch.size === 0) return;
  scope.postMessage({ type: "batch", messages: [...batch.values()] } satisfies FromWorker);
  batch = new Map();
}

/**
 * Tells the relay's thread. Replies and slot advances wait for the next report, to go together;
 * anything else takes them along first, so the relay sees every message in the order it was said (a slot
 * `flush` after the advance it writes).
 */
function post(message: FromWorker): void {
  if (message.type === "reply" || message.type === "advance") {
    const key = message.type === "reply" ? `r${message.sender.pid}` : `a${message.name}`;
    batch.delete(key);
    batch.set(key, message);
    return;
  }
  flushBatch();
  scope.postMessage(message);
}

const calls = new Map<number, PromiseWithResolvers<unknown>>();
let nextCall = 1;

/** Asks the relay's thread; resolves with its answer. */
function call(c: SlotCall): Promise<unknown> {
  const id = nextCall++;
  const pending = Promise.withResolvers<unknown>();
  calls.set(id, pending);
  post({ type: "call", id, call: c });
  return pending.promise;
}

/** The relay's thread answered call `id`. */
function answer(id: number, value: unknown, error: RemoteError | undefined): void {
  const pending = calls.get(id);
  if (!pending) return;
  calls.delete(id);
  if (error) pending.reject(fromRemoteError(error));
  else pending.resolve(value);
}

/** Log lines go to the relay's logger, which counts them for `/metrics` and writes them. */
const log: Logger = {
  log(level, message, fields) {
    post({ type: "log", level, message, fields });
  },
};

/** What a report would say of a sender: the fields `/status` shows that may change. */
function senderKey(s: Sender): string {
  return `${s.state}|${s.timeline}|${s.sentLsn}|${s.writeLsn}|${s.flushLsn}|${s.replayLsn}|` +
    `${s.replyTime?.getTime()}|${s.xmin}|${s.xminEpoch}|${s.catalogXmin}|` +
    `${s.catalogXminEpoch}|${s.slot}|${s.bytesSent}|${s.source}|${s.user}|${s.applicationName}`;
}

const DAMAGED_FILE = /^WAL file "([^"]+)" is damaged: /;

/**
 * A line of a thread's store. Every thread's store may say the same (a skipped file, a damaged
 * segment it validated too): the relay's thread writes it once, and a damaged file once per
 * version of the file, as one store remembers it.
 */
async function storeLine(dir: string, message: string): Promise<void> {
  let once = message;
  const damaged = DAMAGED_FILE.exec(message);
  if (damaged) {
    try {
      const st = await Deno.stat(join(dir, damaged[1]!));
      once += `\0${st.dev}:${st.ino}:${st.size}:${st.mtime?.getTime()}`;
    } catch { /* gone, or archived under another name: the line alone */ }
  }
  post({ type: "log", level: "warn", message, fields: undefined, once });
}

/**
 * A registry that tells the relay's thread when a sender comes or goes, and at once when one
 * changes state: `pg_stat_replication` shows a client in "backup" or "streaming" before the
 * client can have seen a byte of it.
 */
class ReportingRegistry extends SenderRegistry {
  #worker: number;
  #changed: (now: boolean) => void;

  constructor(
    worker: number,
    maxSenders: number,
    counters: SharedCounters,
    changed: (now: boolean) => void,
  ) {
    super(maxSenders, counters);
    this.#worker = worker;
    this.#changed = changed;
  }

  override acquire(origin: { clientAddr: string; clientPort: number }): Sender | undefined {
    const s = super.acquire(origin);
    if (!s) return undefined;
    s.worker = this.#worker;
    let state = s.state;
    Object.defineProperty(s, "state", {
      enumerable: true,
      get: () => state,
      set: (next: SenderState) => {
        if (next === state) return;
        state = next;
        this.#changed(true);
      },
    });
    this.#changed(false);
    return s;
  }

  override release(sender: Sender): void {
    super.release(sender);
    this.#changed(false);
  }
}

/** Lag is measured on the relay's thread, against its own record of the durable end. */
class ForwardedLag extends ReplicationLag {
  override recordReply(sender: Sender, write: Lsn, flush: Lsn, apply: Lsn, time?: number): Lags {
    post({
      type: "reply",
      sender,
      write,
      flush,
      apply,
      time: time ?? preciseNow(),
    });
    return { write: undefined, flush: undefined, replay: undefined };
  }
}

/** One sender thread. */
class SenderThread {
  #init: WorkerInit;
  #counters: SharedCounters;
  #registry: ReportingRegistry;
  #listener: Deno.Listener;
  #tls: TlsBridge | undefined;
  #backups: BackupService;
  #auth: AuthConfig;
  #store: WalStore | undefined;
  #ctx: SessionContext | undefined;
  #sessions = new Set<{ close(): void; beginShutdown(): void }>();
  #running = new Set<Promise<void>>();
  #shutdown = new AbortController();
  #timers: ReturnType<typeof setInterval>[] = [];
  #reporting: ReturnType<typeof setInterval>;
  #rescans: RescanScheduler | undefined;
  #reportQueued = false;
  /** What the relay's thread was last told of each sender, and of the backups and caches. */
  #reported = new Map<number, string>();
  #reportedRest = "";
  #accepting: Promise<void> = Promise.resolve();

  private constructor(
    init: WorkerInit,
    listener: Deno.Listener,
    tls: TlsBridge | undefined,
    backups: BackupService,
  ) {
    this.#init = init;
    this.#auth = init.auth;
    this.#listener = listener;
    this.#tls = tls;
    this.#backups = backups;
    this.#counters = new SharedCounters(init.counters);
    this.#registry = new ReportingRegistry(
      init.worker,
      init.maxSenders,
      this.#counters,
      (now) => this.#report(now),
    );
    // Kept through a drain, so /status shows the streams going to the end.
    this.#reporting = setInterval(() => {
      flushBatch();
      if (this.#registry.size > 0) this.#report();
    }, REPORT_MS);
  }

  /**
   * Connections wait in the listener's backlog until the relay says so: when it has WAL to
   * serve, or knows it has none yet, as its own listener would answer them.
   */
  accept(): void {
    if (this.#shutdown.signal.aborted) return;
    this.#accepting = this.#acceptLoop();
  }

  /**
   * Starts TLS, the backup store and the listener; throws when any of them cannot start.
   */
  static async start(init: WorkerInit): Promise<SenderThread> {
    const tls = init.tls ? await TlsBridge.start(init.tls) : undefined;
    try {
      // The relay's thread chooses, takes and prunes backups; this thread serves the one it is
      // given, from the store, and leaves the store's half-written ones alone.
      const backups = await BackupService.open({
        walDir: init.walDir,
        log,
        cleanup: false,
        acquireStored: async () => {
          const { id, hold } = await call({ method: "acquireBackup" }) as {
            id: string;
            hold: number;
          };
          return {
            id,
            release: () => void call({ method: "releaseBackup", hold }).catch(() => {}),
          };
        },
      });
      const listener = Deno.listen({
        hostname: init.hostname,
        port: init.port,
        reusePort: true,
      } as Deno.TcpListenOptions);
      return new SenderThread(init, listener, tls, backups);
    } catch (e) {
      tls?.close();
      throw e;
    }
  }

  get address(): Deno.NetAddr {
    return this.#listener.addr as Deno.NetAddr;
  }

  #cacheReport(): CacheReport {
    return { blocks: this.#ctx?.blockCache?.stats, archive: this.#store?.archiveCache };
  }

  #backupReport(): BackupReport {
    const b = this.#backups;
    return { serving: [...b.serving], served: b.totals.served, failed: b.totals.failed };
  }

  /**
   * Tells the relay's thread what changed since the last report: the senders that moved, those
   * gone, the backups and caches. Idle connections cost nothing. `now` reports at once; otherwise
   * reports are coalesced to one per turn of the event loop.
   */
  #report(now = false): void {
    if (now) {
      this.#sendReport();
      return;
    }
    if (this.#reportQueued) return;
    this.#reportQueued = true;
    queueMicrotask(() => {
      this.#reportQueued = false;
      this.#sendReport();
    });
  }

  #sendReport(): void {
    const changed: Sender[] = [];
    const live = new Set<number>();
    for (const s of this.#registry.list()) {
      live.add(s.pid);
      const key = senderKey(s);
      if (this.#reported.get(s.pid) === key) continue;
      this.#reported.set(s.pid, key);
      changed.push(s);
    }
    const gone: number[] = [];
    for (const pid of this.#reported.keys()) {
      if (!live.has(pid)) gone.push(pid);
    }
    for (const pid of gone) this.#reported.delete(pid);
    const backups = this.#backupReport();
    const caches = this.#cacheReport();
    const rest = JSON.stringify([backups, caches]);
    if (changed.length === 0 && gone.length === 0 && rest === this.#reportedRest) return;
    this.#reportedRest = rest;
    post({ type: "senders", changed, gone, backups, caches });
  }

  /** The store is open on the relay's thread: open it here too, bounded by its durable end. */
  async serve(durable: DurableEnd | undefined): Promise<void> {
    if (this.#shutdown.signal.aborted) return;
    const init = this.#init;
    const tail = init.tail ? new SharedTail(init.tail) : undefined;
    // What this thread took from the tail last: a look costs a few atomic loads when nothing moved.
    let known = durable ? { ...durable } : { tli: 0, end: 0n };
    const follow = (): void => {
      const store = this.#store;
      if (!tail || !store) return;
      const p = tail.position();
      if (p.tli === 0 || (p.tli === known.tli && p.end <= known.end)) return;
      const c = tail.copy(known.tli, known.end, THREAD_TAIL_BYTES);
      known = { tli: c.tli, end: c.end };
      store.noteDurable(c.tli, c.bytes.length > 0 ? c.start : c.end, c.bytes);
    };
    const store = await WalStore.open(init.walDir, {
      log: (message) => void storeLine(init.walDir, message),
      // This thread is off the relay's event loop already.
      validationWorkers: false,
      // The budgets are the relay's, shared among the workers: memory does not grow with them.
      cacheSize: Math.ceil(init.cacheSize / init.workers),
      // Archived segments decode once for every thread, in the relay's thread's cache.
      decodedSegments: new RemoteSegments((c) => call({ method: "segments", call: c })),
      // And are validated once for every thread, by the relay thread's store.
      sharedCheck: (tli, segno) =>
        call({ method: "checkSegment", tli, segno }) as Promise<SegmentCheck | undefined>,
      ...(durable ? { durable } : {}),
      ...(tail ? { follow, memoryTail: THREAD_TAIL_BYTES } : {}),
    });
    if (tail) {
      // Before its senders sleep, the thread asks to be woken and looks once more: the relay's
      // thread publishes before it looks at the flags, so no advance falls between.
      let waking = false;
      store.latch.onWait = () => {
        tail.sleeping(init.worker);
        if (!waking) {
          waking = true;
          void tail.woken(init.worker).then(() => {
            waking = false;
            follow();
          });
        }
        follow();
      };
    }
    this.#store = store;
    const rescans = this.#rescans = new RescanScheduler(store, {
      onError: (e) => log.log("warn", `could not rescan WAL directory: ${e.message}`),
    });
    this.#timers.push(setInterval(() => rescans.rescan(), init.rescanMs));
    if (init.watch) {
      rescans.watch(store.dir, store.layout, (e) => {
        log.log("warn", `watching the WAL directory failed: ${e.message}`);
      });
    }
    this.#ctx = {
      store,
      registry: this.#registry,
      slots: new RemoteSlots(call, post),
      log,
      shutdown: this.#shutdown.signal,
      timeouts: init.timeouts,
      tls: this.#tls,
      lag: new ForwardedLag(),
      blockCache: new WalBlockCache({
        maxBytes: Math.ceil(WAL_BLOCK_CACHE_BYTES / init.workers),
      }),
      runBuffers: createRunBuffers(),
      backups: this.#backups,
      authenticate: createAuthenticator(
        () => this.#auth,
        crypto.getRandomValues(new Uint8Array(32)),
      ),
    };
  }

  async refresh(): Promise<void> {
    await this.#store?.refresh();
  }

  setAuth(auth: AuthConfig): void {
    this.#auth = auth;
  }

  async #acceptLoop(): Promise<void> {
    const init = this.#init;
    try {
      for await (const conn of this.#listener) {
        try {
          (conn as Deno.TcpConn).setNoDelay(true);
        } catch { /* not TCP */ }
        post({ type: "accepted" });
        if (!this.#counters.tryConnect(init.maxConnections)) {
          refuseTooManyClients(conn, log);
          continue;
        }
        const ctx = this.#ctx;
        const session = ctx ? new Session(conn, ctx) : new NotYetAccepting(conn, {
          tls: this.#tls,
          timeoutMs: init.timeouts.authentication,
          log,
        });
        this.#sessions.add(session);
        const p = session.run().finally(() => {
          this.#counters.disconnect();
          this.#sessions.delete(session);
          this.#running.delete(p);
        });
        this.#running.add(p);
      }
    } catch (e) {
      if (!this.#shutdown.signal.aborted) {
        log.log("error", `accept failed: ${(e as Error).message}`);
      }
    }
  }

  #stopAccepting(): void {
    this.#shutdown.abort();
    try {
      this.#listener.close();
    } catch { /* already closed */ }
    for (const t of this.#timers) clearInterval(t);
    this.#rescans?.stop();
    this.#backups.close();
  }

  /**
   * Graceful: the relay's thread has stopped its upstream and announced the final end before
   * this, so a streaming session drains to it and ends with `COPY 0`; idle ones close.
   */
  async shutdown(): Promise<void> {
    if (!this.#shutdown.signal.aborted) {
      this.#stopAccepting();
      await this.#store?.refresh().catch(() => {});
      for (const s of this.#sessions) s.beginShutdown();
    }
    await this.#stopped();
  }

  /** Closes every connection now. */
  close(): void {
    this.#stopAccepting();
    for (const s of this.#sessions) s.close();
  }

  async #stopped(): Promise<void> {
    await this.#accepting;
    while (this.#running.size > 0) await Promise.allSettled([...this.#running]);
    clearInterval(this.#reporting);
    this.#tls?.close();
    // The last word on the senders: none left.
    this.#sendReport();
  }

  /** Resolves once the listener is closed and every session has ended. */
  stopped(): Promise<void> {
    return this.#stopped();
  }
}

let thread: SenderThread | undefined;
/** Messages that touch the store run one after another, in the order sent. */
let queue: Promise<void> = Promise.resolve();
let ending = false;

/** A failure the thread cannot go on from: the relay's thread stops the relay. */
function fatal(e: unknown): void {
  post({ type: "failed", message: `sender thread failed: ${(e as Error)?.message ?? e}` });
  thread?.close();
}

async function handle(m: ToWorker): Promise<void> {
  switch (m.type) {
    case "init": {
      try {
        thread = await SenderThread.start(m);
      } catch (e) {
        post({ type: "failed", message: (e as Error).message });
        return;
      }
      post({ type: "listening", port: thread.address.port, hostname: thread.address.hostname });
      return;
    }
    case "serve":
      await thread?.serve(m.durable);
      post({ type: "done", id: m.id });
      return;
    case "accept":
      thread?.accept();
      return;
    case "refresh":
      try {
        await thread?.refresh();
      } catch (e) {
        log.log("warn", `could not rescan WAL directory: ${(e as Error).message}`);
      }
      if (m.id !== undefined) post({ type: "done", id: m.id });
      return;
    case "shutdown":
      if (ending) return;
      ending = true;
      await thread?.shutdown();
      post({ type: "stopped" });
      return;
  }
}

scope.on("message", (m: ToWorker) => {
  switch (m.type) {
    case "answer":
      answer(m.id, m.value, m.error);
      return;
    case "auth":
      thread?.setAuth(m.auth);
      return;
    case "close":
      // Not queued: it must not wait behind a drain.
      thread?.close();
      if (!ending) {
        ending = true;
        (thread?.stopped() ?? Promise.resolve()).then(() => post({ type: "stopped" }), fatal);
      }
      return;
    default:
      queue = queue.then(() => handle(m)).catch(fatal);
  }
});
