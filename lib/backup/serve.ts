/**
 * Serving BASE_BACKUP from a backup the relay holds, framed as a server of the served major
 * frames it (`SendBaseBackup` and `bbsink_copystream`): the start position, the tablespace list,
 * one COPY OUT with every archive and the manifest, the end position.
 *
 * The archives go out as stored, changed only where the client asked for something else than
 * what was stored: the symlink entries of plain format instead of `tablespace_map`, the WAL from
 * the start to the end in `pg_wal/` (read from the relay's store), another manifest checksum
 * algorithm. The manifest is written again to match what was sent, so `pg_verifybackup` passes.
 *
 * @module
 */

import { PgError, SqlState } from "../pgwire/error.ts";
import {
  commandComplete,
  copyDone,
  dataRow,
  MessageBuilder,
  readyForQuery,
  rowDescription,
} from "../pgwire/messages.ts";
import { formatLsn, type Lsn } from "../wal/lsn.ts";
import { WalFileMissingError } from "../wal/errors.ts";
import { WalSegmentDamagedError } from "../wal/segment_validation.ts";
import { historyFileName, type TimelineId } from "../wal/segment.ts";
import type { WalStore } from "../wal/store.ts";
import { baseBackupColumns } from "../replication/result_sets.ts";
import { CopySink, type MessageSink, SINK_BUFFER_LENGTH } from "./copy_sink.ts";
import {
  buildManifest,
  type ChecksumAlgorithm,
  FileChecksum,
  type Manifest,
  type ManifestFile,
  manifestTime,
  parseManifest,
} from "./manifest.ts";
import type { BaseBackupOptions } from "./options.ts";
import { buildTarHeader, paddingAfter, tarEvents, type TarHeader } from "./tar.ts";
import { type RangeSegment, waitForWalRange } from "./wal_range.ts";

/** What the client learns before the COPY: where the backup starts and its tablespaces. */
export interface BackupStart {
  /** Backup start. */
  startLsn: Lsn;
  /** Timeline at the start. */
  timeline: TimelineId;
  /** User tablespaces in the order sent, with the PROGRESS estimate. */
  tablespaces: { oid: string; location: string; estimateKb: number }[];
  /** The PROGRESS estimate of the main directory, in kB. */
  baseEstimateKb: number;
  /** The checksum algorithm of the manifest's files. */
  manifestAlgorithm: ChecksumAlgorithm;
}

/** A backup to serve: stored, or being taken from the upstream right now. */
export interface BackupSource {
  /** The backup's id, for logs and status. */
  readonly id: string;
  /** Resolves once the start is known. */
  start(): Promise<BackupStart>;
  /** The bytes of archive `name` (`base.tar`, `<oid>.tar`), as the server sent them. */
  archive(name: string): AsyncIterable<Uint8Array>;
  /** The manifest as stored. */
  manifest(): Promise<Uint8Array>;
  /** Resolves once the end is known. */
  end(): Promise<{ endLsn: Lsn; endTimeline: TimelineId }>;
}

/** Progress of one BASE_BACKUP being served, for `/status`. */
export interface BackupProgress {
  /** The backup served. */
  backupId: string;
  /** The client's pid (the sender's). */
  pid: number;
  /** `pg_stat_progress_basebackup.phase`. */
  phase:
    | "waiting for checkpoint to finish"
    | "streaming database files"
    | "transferring wal files"
    | "done";
  /** Bytes of archives streamed. */
  bytesDone: number;
  /** The total, when known. */
  bytesTotal: number | undefined;
  /** When it began. */
  started: Date;
}

/** A file as sent: its header, and its checksum when it had to be computed. */
interface SentFile {
  path: string;
  header: TarHeader;
  added: boolean;
  checksum: string | undefined;
}

/**
 * The manifest written again to match the files sent, in the order sent. Checksums are computed
 * while streaming only when the client wants another algorithm than the stored one (or for files
 * the relay adds); the stored manifest, which may only arrive after the archives when the backup
 * is being read through, is consulted at the end.
 */
class ManifestPlan {
  #algorithm: ChecksumAlgorithm;
  #storedAlgorithm: ChecksumAlgorithm;
  #files: SentFile[] = [];
  #current: { file: SentFile; sum: FileChecksum } | undefined;

  constructor(algorithm: ChecksumAlgorithm, storedAlgorithm: ChecksumAlgorithm) {
    this.#algorithm = algorithm;
    this.#storedAlgorithm = storedAlgorithm;
  }

  /** A regular file begins. */
  begin(path: string, header: TarHeader, added: boolean): void {
    this.end();
    const file: SentFile = { path, header, added, checksum: undefined };
    this.#files.push(file);
    if (added || this.#algorithm !== this.#storedAlgorithm) {
      this.#current = { file, sum: new FileChecksum(this.#algorithm) };
    }
  }

  update(bytes: Uint8Array): void {
    this.#current?.sum.update(bytes);
  }

  end(): void {
    if (!this.#current) return;
    this.#current.file.checksum = this.#current.sum.digest();
    this.#current = undefined;
  }

  build(stored: Manifest, forceEncode: boolean): Uint8Array {
    this.end();
    const byPath = new Map(stored.files.map((f) => [f.path, f]));
    const files: ManifestFile[] = [];
    for (const f of this.#files) {
      const s = byPath.get(f.path);
      if (!s && !f.added) continue; // not in the manifest as taken (WAL, say)
      if (s && s.algorithm === this.#algorithm) {
        files.push(s);
        continue;
      }
      files.push({
        path: f.path,
        size: f.header.size,
        lastModified: s?.lastModified ?? manifestTime(f.header.mtime),
        algorithm: this.#algorithm,
        checksum: f.checksum ?? "",
      });
    }
    return buildManifest({ ...stored, files }, { forceEncode });
  }
}

/** What the main archive needs changed. */
interface BasePlan {
  /** Drop `tablespace_map` and add symlink entries (plain format). */
  symlinks: { oid: string; location: string }[] | undefined;
  /** WAL files to append, and history files, from the relay's store. */
  wal: {
    files: RangeSegment[];
    history: { name: string; content: Uint8Array }[];
    store: WalStore;
  } | undefined;
}

/** Sends one archive through the sink, member by member, applying `plan` to the main one. */
async function sendArchive(
  sink: CopySink,
  chunks: AsyncIterable<Uint8Array>,
  manifest: ManifestPlan | undefined,
  prefix: string,
  plan: BasePlan | undefined,
  progress: BackupProgress,
): Promise<void> {
  let skipping = false;
  let owner = { uid: 0, gid: 0 };
  // Content in large pieces; the sink cuts them into CopyData of at most 32 kB.
  for await (const ev of tarEvents(chunks, 1 << 20)) {
    if (ev.kind === "member") {
      manifest?.end();
      const h = ev.header;
      skipping = plan !== undefined && (
        (plan.symlinks !== undefined && h.name === "tablespace_map") ||
        // WAL stored inside the archive is left out; WAL goes in from the store when asked.
        (h.typeflag === "0" && h.name.startsWith("pg_wal/"))
      );
      if (skipping) continue;
      if (h.name === "backup_label") owner = { uid: h.uid, gid: h.gid };
      await sink.archive(ev.block);
      if (h.typeflag === "0") manifest?.begin(prefix + h.name, h, false);
      if (plan?.symlinks && h.name === "pg_tblspc/") {
        for (const t of plan.symlinks) {
          await sink.archive(buildTarHeader({
            ...h,
            name: `pg_tblspc/${t.oid}/`,
            mode: 0o777,
            size: 0,
            typeflag: "2",
            linkname: t.location,
          }));
        }
      }
    } else if (ev.kind === "data") {
      if (skipping) continue;
      manifest?.update(ev.bytes);
      await sink.archive(ev.bytes);
    } else if (ev.kind === "padding") {
      if (!skipping) await sink.archive(ev.bytes);
    } else {
      manifest?.end();
      if (plan?.wal) {
        progress.phase = "transferring wal files";
        await appendWal(sink, manifest, plan.wal, owner);
      }
      await sink.archive(ev.bytes);
    }
  }
}

/** Adds one file of given content (`sendFileWithContent`, `sendFile`). */
async function addFile(
  sink: CopySink,
  manifest: ManifestPlan | undefined,
  header: TarHeader,
  content: Uint8Array,
): Promise<void> {
  await sink.archive(buildTarHeader(header));
  manifest?.begin(header.name, header, true);
  manifest?.update(content);
  manifest?.end();
  await sink.archive(content);
  await sink.archive(new Uint8Array(paddingAfter(content.length)));
}

/**
 * The WAL of `perform_base_backup`'s `includewal` part: each segment whole (not listed in the
 * manifest) and its `.done`, then every history file and its `.done`.
 */
async function appendWal(
  sink: CopySink,
  manifest: ManifestPlan | undefined,
  wal: NonNullable<BasePlan["wal"]>,
  owner: { uid: number; gid: number },
): Promise<void> {
  const segSize = wal.store.identity.segmentSize;
  for (const seg of wal.files) {
    const f = seg.file;
    // Validated before its first byte goes out, as every segment the relay streams is.
    if (seg.validBytes === segSize) {
      const check = await wal.store.checkSegment(f.tli, f.segno);
      if (check?.error) {
        throw new WalSegmentDamagedError(check.errorFile ?? f.name, check.error, check.validEnd);
      }
    }
    // A segment stored compressed (`--compress`) is read as its decoded bytes.
    using file = await wal.store.openSegment(f.name);
    const st = file.statSync();
    const mtime = Math.floor((st.mtime?.getTime() ?? Date.now()) / 1000);
    await sink.archive(buildTarHeader({
      name: `pg_wal/${seg.name}`,
      mode: 0o600,
      ...owner,
      size: segSize,
      mtime,
      typeflag: "0",
      linkname: "",
    }));
    let left = seg.validBytes;
    while (left > 0) {
      const buf = new Uint8Array(Math.min(left, SINK_BUFFER_LENGTH));
      const n = await file.read(buf);
      if (n === null) {
        throw new PgError(SqlState.IO_ERROR, `unexpected WAL file size "${f.name}"`);
      }
      left -= n;
      await sink.archive(buf.subarray(0, n));
    }
    // Past the durable end of an unfinished last segment: zeros, never bytes not yet durable.
    for (let z = segSize - seg.validBytes; z > 0; z -= SINK_BUFFER_LENGTH) {
      await sink.archive(new Uint8Array(Math.min(z, SINK_BUFFER_LENGTH)));
    }
    if (wal.store.isRemoved(f)) {
      throw new PgError(
        SqlState.UNDEFINED_FILE,
        `requested WAL segment ${f.name} has already been removed`,
      );
    }
    await addFile(sink, manifest, doneHeader(seg.name, owner), new Uint8Array(0));
  }
  for (const { name, content } of wal.history) {
    await addFile(sink, manifest, {
      name: `pg_wal/${name}`,
      mode: 0o600,
      ...owner,
      size: content.length,
      mtime: Math.floor(Date.now() / 1000),
      typeflag: "0",
      linkname: "",
    }, content);
    await addFile(sink, manifest, doneHeader(name, owner), new Uint8Array(0));
  }
}

function doneHeader(name: string, owner: { uid: number; gid: number }): TarHeader {
  return {
    name: `pg_wal/archive_status/${name}.done`,
    mode: 0o600,
    ...owner,
    size: 0,
    mtime: Math.floor(Date.now() / 1000),
    typeflag: "0",
    linkname: "",
  };
}

/**
 * The history files of the timelines the store knows, as `pg_wal/` would hold them (read through
 * the store, so an archived one comes decoded).
 */
async function historyFiles(store: WalStore): Promise<{ name: string; content: Uint8Array }[]> {
  const files: { name: string; content: Uint8Array }[] = [];
  for (const h of store.history) {
    if (h.tli < 2) continue;
    try {
      files.push({ name: historyFileName(h.tli), content: await store.historyContent(h.tli) });
    } catch (e) {
      if (!(e instanceof WalFileMissingError)) throw e;
    }
  }
  return files;
}

function notice(message: string): Uint8Array {
  return new MessageBuilder("N")
    .byte(0x53).cstring("NOTICE")
    .byte(0x56).cstring("NOTICE")
    .byte(0x43).cstring("00000")
    .byte(0x4d).cstring(message)
    .byte(0)
    .finish();
}

/** What {@linkcode sendBaseBackup} needs. */
export interface SendBaseBackupParams {
  /** The client. */
  client: MessageSink;
  /** The relay's WAL store, for `WAL` and the served major. */
  wal: WalStore;
  /** The backup. */
  source: BackupSource;
  /** The client's options. */
  options: BaseBackupOptions;
  /** Updated as the backup goes out. */
  progress: BackupProgress;
  /** How long to wait for the backup's WAL to be durable here (`WAL`). */
  walTimeoutMs: number;
  /** Aborted on shutdown. */
  signal?: AbortSignal;
}

/**
 * Sends a whole BASE_BACKUP answer, ReadyForQuery included. An error after the COPY began is
 * thrown for the caller to report, as PostgreSQL reports one mid-COPY.
 */
export async function sendBaseBackup(p: SendBaseBackupParams): Promise<void> {
  const { client, wal, source, options, progress } = p;
  const major = wal.identity.serverMajor;
  const cols = baseBackupColumns(major);
  const start = await source.start();
  // A backup just taken from the upstream starts at WAL this relay may not hold yet; -X stream
  // asks for it right after the start result set.
  const deadline = Date.now() + p.walTimeoutMs;
  while (
    wal.timeline === start.timeline && wal.endLsn < start.startLsn && Date.now() < deadline &&
    !p.signal?.aborted
  ) {
    await wal.latch.wait(200, p.signal);
  }
  progress.bytesTotal = options.progress
    ? (start.baseEstimateKb + start.tablespaces.reduce((s, t) => s + t.estimateKb, 0)) * 1024
    : undefined;
  const sizeOf = (kb: number): string | null => options.progress ? String(kb) : null;
  await client.send(
    rowDescription(cols.position),
    dataRow([formatLsn(start.startLsn), String(start.timeline)]),
    commandComplete("SELECT"),
    rowDescription(cols.tablespaces),
    ...start.tablespaces.map((t) => dataRow([t.oid, t.location, sizeOf(t.estimateKb)])),
    dataRow([null, null, sizeOf(start.baseEstimateKb)]),
    commandComplete("SELECT"),
    new MessageBuilder("H").byte(0).int16(0).finish(),
  );
  progress.phase = "streaming database files";
  const sink = new CopySink(client, {
    sendToClient: options.sendToClient,
    maxRateKb: options.maxRateKb,
    compression: options.compression,
    level: options.compressionLevel,
  });
  const timer = setInterval(() => progress.bytesDone = sink.bytesDone, 250);
  try {
    const manifest = options.manifest === "no"
      ? undefined
      : new ManifestPlan(options.manifestChecksums, start.manifestAlgorithm);
    for (const t of start.tablespaces) {
      await sink.beginArchive(`${t.oid}.tar`, t.location);
      await sendArchive(
        sink,
        source.archive(`${t.oid}.tar`),
        manifest,
        `pg_tblspc/${t.oid}/`,
        undefined,
        progress,
      );
      await sink.endArchive();
    }
    // Only WAL needs the end before the main archive; a backup being read through ends later.
    let end = options.includeWal ? await source.end() : undefined;
    const plan: BasePlan = {
      symlinks: options.tablespaceMap ? undefined : start.tablespaces,
      wal: undefined,
    };
    if (end) {
      const files = await waitForWalRange(
        wal,
        {
          startLsn: start.startLsn,
          timeline: start.timeline,
          endLsn: end.endLsn,
          endTimeline: end.endTimeline,
        },
        p.walTimeoutMs,
        p.signal,
      );
      plan.wal = { files, history: await historyFiles(wal), store: wal };
    }
    await sink.beginArchive("base.tar", "");
    await sendArchive(sink, source.archive("base.tar"), manifest, "", plan, progress);
    await sink.endArchive();
    if (!options.noWait) {
      // As do_pg_backup_stop with archiving off: the client must see to the WAL itself.
      await client.send(notice(
        "WAL archiving is not enabled; you must ensure that all required WAL segments are copied through other means to complete the backup",
      ));
    }
    if (manifest) {
      const stored = parseManifest(await source.manifest());
      await sink.manifest(manifest.build(stored, options.manifest === "force-encode"));
    }
    end ??= await source.end();
    await sink.flush();
    progress.bytesDone = sink.bytesDone;
    progress.phase = "done";
    await client.send(
      copyDone(),
      rowDescription(cols.position),
      dataRow([formatLsn(end.endLsn), String(end.endTimeline)]),
      commandComplete("SELECT"),
      commandComplete("BASE_BACKUP"),
      readyForQuery(),
    );
  } catch (e) {
    sink.abort();
    throw e;
  } finally {
    clearInterval(timer);
  }
}
