/**
 * When a WAL directory is looked at again: on file events, on the periodic timer, one look at a
 * time, whole rescans spaced out by {@linkcode RescanPacer}.
 *
 * @module
 */

import type { ArchiveLayout } from "../archive/layout.ts";
import { RescanPacer } from "./_rescan_pacer.ts";

/** What a {@linkcode RescanScheduler} drives: `WalStore.refresh`. */
export interface Rescannable {
  /** A whole rescan, or given `modified`, a look at those files only. */
  refresh(modified?: readonly string[]): Promise<unknown>;
}

/** Options of {@linkcode RescanScheduler}. */
export interface RescanSchedulerOptions {
  /** Told when a look at the directory fails; the next request tries again. */
  onError: (e: Error) => void;
  /** The clock, in milliseconds. */
  now?: () => number;
}

/**
 * Runs the looks at a WAL directory that file events and the periodic timer ask for, one at a
 * time; requests made meanwhile are merged into the next. An event that a file was written to
 * (`modify`, or `access`: closed after writing) asks to look at that file only: a client
 * appending to a `.partial` raises one with every write, and a whole rescan lists the directory,
 * so a few hundred files rescanned on every write cost a quarter of a core. Any other event (a
 * file created, renamed or removed) asks for a whole rescan, spaced out in a large directory by
 * {@linkcode RescanPacer}.
 *
 * @example
 * ```ts
 * import { RescanScheduler } from "./_rescan_scheduler.ts";
 * import assert from "node:assert/strict";
 * const asked: (readonly string[] | undefined)[] = [];
 * const store = { refresh: (m?: readonly string[]) => Promise.resolve(void asked.push(m)) };
 * const scheduler = new RescanScheduler(store, { onError: () => {} });
 * scheduler.event({ kind: "modify", paths: ["/wal/000000010000000000000001.partial"] });
 * await scheduler.idle();
 * assert.deepEqual(asked, [["000000010000000000000001.partial"]]);
 * scheduler.stop();
 * ```
 */
export class RescanScheduler {
  readonly #store: Rescannable;
  readonly #onError: (e: Error) => void;
  readonly #now: () => number;
  readonly #pacer = new RescanPacer();
  #running: Promise<void> | undefined;
  #whole = false;
  readonly #names = new Set<string>();
  #timer: ReturnType<typeof setTimeout> | undefined;
  #watcher: Deno.FsWatcher | undefined;
  #stopped = false;

  /**
   * @param store What to refresh.
   * @param options Where failures go.
   */
  constructor(store: Rescannable, options: RescanSchedulerOptions) {
    this.#store = store;
    this.#onError = options.onError;
    this.#now = options.now ?? (() => performance.now());
  }

  /** Asks for a whole rescan. */
  rescan(): void {
    this.#whole = true;
    this.#kick();
  }

  /**
   * Takes a file event of a directory watched without recursion, so that every path names a file
   * in it.
   *
   * @param event What `Deno.watchFs` reported.
   */
  event(event: Pick<Deno.FsEvent, "kind" | "paths">): void {
    // "access" is a file closed after writing (notify watches no reads).
    const written = event.kind === "modify" || event.kind === "access";
    if (!written || event.paths.length === 0) return this.rescan();
    for (const path of event.paths) this.#names.add(path.slice(path.lastIndexOf("/") + 1));
    this.#kick();
  }

  /**
   * Watches the directory until {@linkcode RescanScheduler.stop}, each event a request; settles
   * when watching ends.
   *
   * @param dir The WAL directory.
   * @param layout How it is laid out: archive layouts add files in subdirectories, watched too,
   * and every event of theirs asks for a whole rescan.
   * @param onFail Told if watching fails.
   */
  async watch(dir: string, layout: ArchiveLayout, onFail: (e: Error) => void): Promise<void> {
    const recursive = layout !== "plain" && layout !== "pg_receivewal";
    try {
      this.#watcher = Deno.watchFs(dir, { recursive });
      for await (const event of this.#watcher) {
        if (recursive) this.rescan();
        else this.event(event);
      }
    } catch (e) {
      if (!this.#stopped) onFail(e as Error);
    }
  }

  /** Settles once nothing runs or waits to run but a paced rescan's timer. */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** No more looks and no more watching: a running look finishes, nothing starts. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    try {
      this.#watcher?.close();
    } catch { /* already closed */ }
  }

  #kick(): void {
    if (this.#stopped || this.#running) return;
    if (this.#whole && this.#timer === undefined) {
      const wait = this.#pacer.wait(this.#now());
      if (wait <= 0) return this.#run(undefined);
      this.#timer = setTimeout(() => {
        this.#timer = undefined;
        this.#kick();
      }, wait);
    }
    // While a whole rescan waits for its turn, written files are still looked at: the listing
    // is what waits, not the new WAL in files already known.
    if (this.#names.size > 0) this.#run([...this.#names]);
  }

  #run(names: string[] | undefined): void {
    if (names === undefined) this.#whole = false;
    this.#names.clear();
    const start = this.#now();
    this.#running = this.#store.refresh(names).then(
      () => {},
      (e) => this.#onError(e as Error),
    ).finally(() => {
      if (names === undefined) this.#pacer.done(start, this.#now());
      this.#running = undefined;
      this.#kick();
    });
  }
}
