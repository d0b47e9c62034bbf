/**
 * Taking a base backup from the upstream, as `pg_basebackup -Ft` takes one (BASE_BACKUP of
 * PostgreSQL 15 and later, one COPY OUT with `n`/`d`/`p`/`m` messages, a manifest), written into
 * the backup store and served to clients while it arrives: readers follow each archive's file as
 * it grows. Only once the whole backup is fsynced and renamed into place does it count as
 * stored; if the upstream fails half-way, the readers get an error and nothing is kept.
 *
 * @module
 */

import { join } from "node:path";
import { concatBytes } from "../_io.ts";
import type { Logger } from "../log.ts";
import type { PgClient } from "../pgwire/client.ts";
import { BodyReader } from "../pgwire/body_reader.ts";
import { PgError, SqlState } from "../pgwire/error.ts";
import { parseDataRow } from "../pgwire/query_result.ts";
import { MessageBuilder } from "../pgwire/messages.ts";
import { parseErrorFields, PgServerError } from "../pgwire/server_error.ts";
import { connectUpstream } from "../upstream/connect.ts";
import { parseConninfo } from "../upstream/conninfo.ts";
import { resolveConninfo } from "../upstream/conninfo_resolve.ts";
import { formatLsn, type Lsn, parseLsn } from "../wal/lsn.ts";
import type { TimelineId } from "../wal/segment.ts";
import { scanBaseArchive, scanTablespaceArchive } from "./archive_info.ts";
import { parseManifest } from "./manifest.ts";
import type { BackupStart } from "./serve.ts";
import type { BackupInProgress, BackupTaker } from "./service.ts";
import {
  backupId,
  type BackupInfo,
  type BackupStore,
  type BackupTablespace,
  type BackupWriter,
} from "./store.ts";
import { fileChunks } from "./tar.ts";

/**
 * The command the relay sends: what `pg_basebackup -Ft -X none -c fast` sends, without waiting
 * for archiving (the relay streams the WAL itself), and throttled when asked.
 */
function command(maxRateKb: number | undefined): string {
  const rate = maxRateKb ? `  MAX_RATE ${maxRateKb},` : "";
  return `BASE_BACKUP ( LABEL 'walrelay base backup',  PROGRESS,  CHECKPOINT 'fast',  WAIT 0,${rate}  TABLESPACE_MAP,  MANIFEST 'yes',  TARGET 'client')`;
}

/** Options of {@linkcode upstreamTaker}. */
export interface UpstreamTakerOptions {
  /** The upstream's conninfo, as relay mode follows it. */
  conninfo: string;
  /** Log lines. */
  log: Logger;
  /** `MAX_RATE` of the backups taken, in kB/s, to spare the upstream. */
  maxRateKb?: number | undefined;
  /**
   * Whether the relay holds WAL from `start` on `timeline`: a backup starting before it (a
   * standby's old restartpoint, say) could never be recovered from the relay, so it is abandoned.
   */
  holdsWalFrom?: ((start: Lsn, timeline: TimelineId) => boolean) | undefined;
  /**
   * Once the COPY has begun, an upstream silent for this long is given up on, as a walreceiver
   * gives up at `wal_receiver_timeout`; its clients get an error instead of waiting for good.
   * Default 60 s. (Before the COPY the upstream may be checkpointing, for as long as it takes.)
   */
  stallTimeoutMs?: number | undefined;
}

/**
 * A {@linkcode BackupTaker} that takes backups from the upstream.
 *
 * @example
 * ```ts ignore
 * const take = upstreamTaker({ conninfo: "host=primary user=repl", log });
 * ```
 */
export function upstreamTaker(opts: UpstreamTakerOptions): BackupTaker {
  return (store) => new UpstreamBackup(store, opts);
}

/** One archive file as it grows. */
interface GrowingFile {
  name: string;
  written: number;
  finished: boolean;
}

/** A wake-up for readers waiting on more bytes: replaced each time it fires. */
class Changed {
  #p = Promise.withResolvers<void>();
  get promise(): Promise<void> {
    return this.#p.promise;
  }
  fire(): void {
    this.#p.resolve();
    this.#p = Promise.withResolvers<void>();
  }
}

class UpstreamBackup implements BackupInProgress {
  readonly started = new Date();
  bytesReceived = 0;
  readonly done: Promise<BackupInfo>;
  #store: BackupStore;
  #opts: UpstreamTakerOptions;
  #id: string | undefined;
  #dir: string | undefined;
  #finalDir: string | undefined;
  #start = Promise.withResolvers<BackupStart>();
  #end = Promise.withResolvers<{ endLsn: Lsn; endTimeline: TimelineId }>();
  #manifest = Promise.withResolvers<Uint8Array>();
  #files = new Map<string, GrowingFile>();
  #changed = new Changed();
  #failure: Error | undefined;
  #client: PgClient | undefined;
  #aborted = false;

  constructor(store: BackupStore, opts: UpstreamTakerOptions) {
    this.#store = store;
    this.#opts = opts;
    for (const p of [this.#start.promise, this.#end.promise, this.#manifest.promise]) {
      p.catch(() => {});
    }
    this.done = this.#run();
    this.done.catch(() => {});
  }

  get id(): string {
    return this.#id ?? "(being taken from upstream)";
  }

  start(): Promise<BackupStart> {
    return this.#start.promise;
  }

  end(): Promise<{ endLsn: Lsn; endTimeline: TimelineId }> {
    return this.#end.promise;
  }

  manifest(): Promise<Uint8Array> {
    return this.#manifest.promise;
  }

  async *archive(name: string): AsyncGenerator<Uint8Array> {
    let f: GrowingFile | undefined;
    while (!(f = this.#files.get(name))) {
      if (this.#failure) throw this.#failure;
      await this.#changed.promise;
    }
    using file = await this.#open(name);
    let offset = 0;
    while (true) {
      if (this.#failure) throw this.#failure;
      if (offset < f.written) {
        const buf = new Uint8Array(Math.min(f.written - offset, 1 << 17));
        const n = await file.read(buf);
        if (n === null) throw new Error(`archive "${name}" ended early`);
        offset += n;
        yield buf.subarray(0, n);
        continue;
      }
      if (f.finished) return;
      await this.#changed.promise;
    }
  }

  /** Opens an archive where it is now: the temporary directory, or the final one after commit. */
  async #open(name: string): Promise<Deno.FsFile> {
    try {
      return await Deno.open(join(this.#dir!, name), { read: true });
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) || !this.#finalDir) throw e;
      return await Deno.open(join(this.#finalDir, name), { read: true });
    }
  }

  #fail(e: Error): void {
    this.#failure ??= e;
    this.#start.reject(e);
    this.#end.reject(e);
    this.#manifest.reject(e);
    this.#changed.fire();
  }

  /** Abandons the backup: the upstream connection is closed, readers get an error. */
  abort(): void {
    this.#aborted = true;
    this.#client?.close();
  }

  async #run(): Promise<BackupInfo> {
    let writer: BackupWriter | undefined;
    let client: PgClient | undefined;
    try {
      writer = await this.#store.begin();
      this.#dir = writer.dir;
      const c = resolveConninfo(parseConninfo(this.#opts.conninfo), {
        replication: true,
        fallbackApplicationName: "walrelay",
      });
      ({ client } = await connectUpstream(c, {
        params: {
          database: "replication",
          replication: "true",
          application_name: c.applicationName,
        },
        stopped: () => this.#aborted,
      }));
      this.#client = client;
      if (this.#aborted) throw new Error("the relay is shutting down");
      this.#opts.log.log("info", "taking base backup from upstream", {});
      const info = await this.#receive(client, writer);
      await client.terminate();
      client = undefined;
      this.#finalDir = join(this.#store.root, info.id);
      await writer.commit(info);
      this.#changed.fire();
      return info;
    } catch (e) {
      const err = e instanceof PgServerError
        ? new PgError(
          SqlState.INTERNAL_ERROR,
          `could not take base backup from upstream: ${e.message}`,
        )
        : new PgError(
          SqlState.INTERNAL_ERROR,
          `could not take base backup from upstream: ${(e as Error).message}`,
        );
      this.#fail(err);
      client?.close();
      await writer?.abort();
      throw err;
    }
  }

  /** Reads the upstream's answer to BASE_BACKUP into the writer's directory. */
  async #receive(client: PgClient, writer: BackupWriter): Promise<BackupInfo> {
    await client.write(
      new MessageBuilder("Q").cstring(command(this.#opts.maxRateKb)).finish(),
    );
    const rows: (string | null)[][][] = [[]];
    let current: { file: Deno.FsFile; entry: GrowingFile } | undefined;
    const manifest: Uint8Array[] = [];
    let inManifest = false;
    let copying = false;
    let start: BackupStart | undefined;
    let end: { endLsn: Lsn; endTimeline: TimelineId } | undefined;
    const stall = this.#opts.stallTimeoutMs ?? 60_000;
    let lastReceive = Date.now();
    let stalled = false;
    const watchdog = setInterval(() => {
      if (!copying || Date.now() - lastReceive < stall) return;
      stalled = true;
      client.close();
    }, Math.min(1000, Math.max(50, stall / 4)));
    const finishArchive = async () => {
      if (!current) return;
      await current.file.sync();
      current.file.close();
      current.entry.finished = true;
      current = undefined;
      this.#changed.fire();
    };
    try {
      while (true) {
        let msg;
        try {
          msg = await client.nextRaw();
        } catch (e) {
          if (stalled) throw new Error("terminating base backup from upstream due to timeout");
          throw e;
        }
        lastReceive = Date.now();
        switch (msg.type) {
          case "T":
            break;
          case "D":
            rows.at(-1)!.push(parseDataRow(msg.body));
            break;
          case "C":
            rows.push([]);
            break;
          case "N":
            break;
          case "E":
            throw new PgServerError(parseErrorFields(msg.body));
          case "H": {
            // The start position, then the tablespaces (main directory last).
            const [pos, spc] = rows.filter((r) => r.length > 0);
            const startLsn = parseLsn(pos?.[0]?.[0] ?? "");
            if (startLsn === undefined || !spc) throw new Error("unexpected BASE_BACKUP answer");
            const main = spc.at(-1)!;
            start = {
              startLsn,
              timeline: Number(pos![0]![1]),
              tablespaces: spc.slice(0, -1).map((r) => ({
                oid: r[0]!,
                location: r[1]!,
                estimateKb: Number(r[2] ?? 0),
              })),
              baseEstimateKb: Number(main[2] ?? 0),
              manifestAlgorithm: "CRC32C",
            };
            if (this.#opts.holdsWalFrom && !this.#opts.holdsWalFrom(startLsn, start.timeline)) {
              throw new Error(
                `the backup starts at ${formatLsn(startLsn)} on timeline ${start.timeline}, ` +
                  "before the WAL this relay holds",
              );
            }
            rows.length = 0;
            rows.push([]);
            copying = true;
            this.#id = backupId(start.timeline, startLsn);
            this.#start.resolve(start);
            break;
          }
          case "d": {
            if (!copying) break;
            const kind = msg.body[0];
            if (kind === 0x6e) {
              await finishArchive();
              const r = new BodyReader(msg.body.subarray(1));
              const name = r.cstring();
              const entry: GrowingFile = { name, written: 0, finished: false };
              current = { file: await writer.create(name), entry };
              this.#files.set(name, entry);
              this.#changed.fire();
            } else if (kind === 0x64) {
              const data = msg.body.subarray(1);
              this.bytesReceived += data.length;
              if (inManifest) {
                manifest.push(data.slice());
              } else if (current) {
                let off = 0;
                while (off < data.length) off += await current.file.write(data.subarray(off));
                current.entry.written += data.length;
                this.#changed.fire();
              }
            } else if (kind === 0x6d) {
              await finishArchive();
              inManifest = true;
            }
            break;
          }
          case "c": {
            await finishArchive();
            copying = false;
            break;
          }
          case "Z": {
            const pos = rows.find((r) => r.length > 0);
            const endLsn = parseLsn(pos?.[0]?.[0] ?? "");
            if (!start || endLsn === undefined) throw new Error("unexpected BASE_BACKUP answer");
            end = { endLsn, endTimeline: Number(pos![0]![1]) };
            return await this.#finish(writer, start, end, manifest);
          }
          default:
            break;
        }
      }
    } finally {
      clearInterval(watchdog);
      current?.file.close();
    }
  }

  /** Writes the manifest, describes the backup, and lets readers see the end. */
  async #finish(
    writer: BackupWriter,
    start: BackupStart,
    end: { endLsn: Lsn; endTimeline: TimelineId },
    parts: Uint8Array[],
  ): Promise<BackupInfo> {
    const bytes = concatBytes(...parts);
    const manifest = parseManifest(bytes);
    const file = await writer.create("backup_manifest");
    try {
      let off = 0;
      while (off < bytes.length) off += await file.write(bytes.subarray(off));
      await file.sync();
    } finally {
      file.close();
    }
    this.#manifest.resolve(bytes);
    this.#end.resolve(end);
    const base = await scanBaseArchive(fileChunks(join(writer.dir, "base.tar")));
    // PROGRESS reports the sizes the server reported; the archives' own are kept beside them.
    const tablespaces: BackupTablespace[] = [];
    for (const t of start.tablespaces) {
      const scanned = await scanTablespaceArchive(fileChunks(join(writer.dir, `${t.oid}.tar`)));
      tablespaces.push({
        oid: t.oid,
        location: t.location,
        bytes: scanned.bytes,
        estimateKb: t.estimateKb,
      });
    }
    return {
      id: backupId(start.timeline, start.startLsn),
      label: base.backupLabel.label,
      startLsn: start.startLsn,
      timeline: start.timeline,
      endLsn: end.endLsn,
      endTimeline: end.endTimeline,
      major: base.major,
      systemId: base.systemId,
      startTime: base.backupLabel.startTime,
      storedAt: new Date(),
      source: "upstream",
      tablespaces,
      base: { bytes: base.bytes, estimateKb: start.baseEstimateKb },
      manifest: {
        bytes: bytes.length,
        version: manifest.version,
        algorithm: manifest.files[0]?.algorithm ?? "CRC32C",
      },
    };
  }
}
