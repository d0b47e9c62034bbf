/**
 * walrelay: a PostgreSQL WAL sender for Deno. Real standbys and `pg_receivewal` stream WAL from
 * it with the ordinary replication protocol, served from a directory of segment files.
 *
 * Start a relay in-process (port 0 picks a free port); it shuts down gracefully when disposed:
 *
 * ```ts
 * import { silentLogger, WalRelay } from "./mod.ts";
 * await using relay = await WalRelay.start({ walDir: "testdata/wal", port: 0, logger: silentLogger });
 * console.log(`psql "host=${relay.hostname} port=${relay.port} replication=true"`);
 * ```
 *
 * Decide who may connect: an {@linkcode Authenticator} rejects a client with a {@linkcode PgError}
 * carrying a {@linkcode SqlState}, which the client sees as PostgreSQL's FATAL.
 *
 * ```ts
 * import { type Authenticator, loopbackTrust, PgError, SqlState } from "./mod.ts";
 * const onlyRepl: Authenticator = (req) =>
 *   req.user === "repl" ? loopbackTrust(req) : Promise.reject(
 *     PgError.fatal(
 *       SqlState.INVALID_AUTHORIZATION_SPECIFICATION,
 *       `role "${req.user}" is not permitted to log in`,
 *     ),
 *   );
 * ```
 *
 * Read a WAL range from a directory as a stream:
 *
 * ```ts
 * import { formatLsn, openWalStream } from "./mod.ts";
 * const stream = await openWalStream("testdata/wal", { start: 0x600000n, end: 0x602000n, tli: 1 });
 * for await (const chunk of stream) console.log(formatLsn(chunk.start), chunk.bytes.length);
 * ```
 *
 * @module
 */

export { WalRelay, type WalRelayOptions } from "./lib/server.ts";
export {
  type BackupInProgress,
  BackupService,
  type BackupServiceOptions,
  type BackupTaker,
} from "./lib/backup/service.ts";
export {
  type BackupInfo,
  BackupStore,
  type BackupTablespace,
  BackupWriter,
} from "./lib/backup/store.ts";
export { type BackupProgress, type BackupSource, type BackupStart } from "./lib/backup/serve.ts";
export { importBackup, type ImportOptions } from "./lib/backup/import.ts";
export { type ChecksumAlgorithm } from "./lib/backup/manifest.ts";
export { type BaseBackupsStatus } from "./lib/backup/status.ts";
export { type Authenticator, type AuthRequest } from "./lib/auth/contract.ts";
export { loopbackTrust } from "./lib/auth/trust.ts";
export { type SessionTimeouts } from "./lib/replication/session.ts";
export {
  type Sender,
  type SenderOrigin,
  SenderRegistry,
  type SenderState,
} from "./lib/replication/registry.ts";
export {
  type ReplicationSlot,
  type SlotAccess,
  type SlotInit,
  SlotManager,
} from "./lib/replication/slots.ts";
export {
  PgError,
  type PgErrorFields,
  type Severity,
  SqlState,
  type SqlStateCode,
} from "./lib/pgwire/error.ts";
export { Latch } from "./lib/wal/latch.ts";
export {
  createLogger,
  type LogFields,
  type Logger,
  type LoggerOptions,
  type LogLevel,
  silentLogger,
} from "./lib/log.ts";
export { openWalStream, type OpenWalStreamOptions } from "./lib/stream/open_wal_stream.ts";
export { openWalSource, type WalSourceOptions } from "./lib/stream/source.ts";
export { BufferPool, FRAME_HEADROOM, MAX_SEND_SIZE, type WalChunk } from "./lib/stream/chunk.ts";
export {
  type WalBlock,
  WalBlockCache,
  type WalBlockCacheOptions,
  type WalBlockCacheStats,
  type WalBlockReader,
} from "./lib/stream/block_cache.ts";
export { UpstreamConfigError } from "./lib/upstream/config_error.ts";
export {
  startUpstream,
  type UpstreamFeedback,
  type UpstreamOptions,
  UpstreamReceiver,
  type UpstreamStatus as UpstreamReceiverStatus,
} from "./lib/upstream/receiver.ts";
export { type DurableSink, type WalIoStats } from "./lib/upstream/durable_writer.ts";
export { type Divergence } from "./lib/upstream/divergence.ts";
export { type ConninfoEnvironment } from "./lib/upstream/conninfo_environment.ts";
export { WalSlicer } from "./lib/stream/slicer.ts";
export { WalFramer } from "./lib/stream/framer.ts";
export {
  type SegmentFile,
  type WalIdentity,
  WalStore,
  type WalStoreOptions,
} from "./lib/wal/store.ts";
export {
  type SegmentCheck,
  type SegmentCheckRequest,
  SegmentValidations,
  type SegmentValidationsOptions,
  WalSegmentDamagedError,
} from "./lib/wal/segment_validation.ts";
export { type WalReaderError } from "./lib/wal/reader.ts";
export { BytesFile, type SegmentHandle } from "./lib/wal/segment_handle.ts";
export { type ArchiveEntry, type ArchiveLayout } from "./lib/archive/layout.ts";
export type {
  CachedFile,
  CachedLease,
  DecodedSegments,
  SegmentCacheStats,
} from "./lib/archive/segment_cache.ts";
export type { ArchivedFile } from "./lib/archive/read_segment.ts";
export { type CompressFormat } from "./lib/archive/compress.ts";
export {
  ArchiveFormatError,
  type ArchiveFormatProblem,
  ArchiveLayoutError,
} from "./lib/archive/errors.ts";
export { type ArchiveFormat } from "./lib/archive/format.ts";
export { formatLsn, INVALID_LSN, type Lsn, MAX_LSN, parseLsn } from "./lib/wal/lsn.ts";
export {
  historyFileName,
  parseWalFileName,
  segmentFileName,
  segmentOf,
  segmentOffset,
  segmentStart,
  type TimelineId,
  type WalFileName,
} from "./lib/wal/segment.ts";
export { type TimelineHistory, type TimelineHistoryEntry } from "./lib/wal/history.ts";
export {
  type Health,
  startStatusServer,
  type StatusServer,
  type StatusServerOptions,
} from "./lib/http/status_server.ts";
export {
  HttpAccess,
  type HttpAccessMethod,
  HttpAccessParseError,
  type HttpAccessRule,
  type HttpAccessVerdict,
  isLoopbackHost,
  loadHttpAccess,
  parseHttpHba,
} from "./lib/http/access.ts";
export {
  parseWalFileRequest,
  WAL_FILE_OUTCOMES,
  type WalFileOutcome,
  type WalFileRequest,
  WalFiles,
} from "./lib/http/wal_files.ts";
export type {
  ArchiveCacheStatus,
  CacheStatus,
  CatchupProgress,
  HistoryPoint,
  MemoryStatus,
  RelayStatus,
  SenderStatus,
  SlotStatus,
  StatusSource,
  StoreStatus,
  TimelineStatus,
  UpstreamDivergence,
  UpstreamProvider,
  UpstreamStatus,
  UpstreamStatusJson,
} from "./lib/http/status.ts";
export { StatusModel } from "./lib/http/status.ts";
export { RelayCounters } from "./lib/http/counters.ts";
export {
  type LagHead,
  type Lags,
  LagTracker,
  ReplicationLag,
} from "./lib/replication/lag_tracker.ts";
