/**
 * BASE_BACKUP on a replication connection, as `SendBaseBackup` runs it: the options checked,
 * the sender in state `backup`, a backup of the relay's sent whole.
 *
 * @module
 */

import { parseBaseBackupOptions } from "../backup/options.ts";
import { type BackupProgress, sendBaseBackup } from "../backup/serve.ts";
import { PgError, SqlState } from "../pgwire/error.ts";
import type { GenericOption } from "./command.ts";
import type { ClientConnection } from "./connection.ts";
import type { Sender } from "./registry.ts";
import type { SessionContext } from "./session.ts";
import { pgErrorOf } from "./wal_errors.ts";

/** How long a BASE_BACKUP with WAL waits for the backup's last segment to be durable here. */
const WAL_WAIT_MS = 60_000;

/**
 * Answers one BASE_BACKUP, ReadyForQuery included.
 *
 * @throws {PgError} for bad options, no backup to serve, or a failure while sending.
 */
export async function runBaseBackup(
  client: ClientConnection,
  ctx: SessionContext,
  sender: Sender,
  options: readonly GenericOption[],
): Promise<void> {
  const opts = parseBaseBackupOptions(options, ctx.store.identity.serverMajor);
  const backups = ctx.backups;
  if (!backups) {
    throw new PgError(SqlState.FEATURE_NOT_SUPPORTED, "BASE_BACKUP is not supported here");
  }
  // A backup imported while the relay runs is served without a restart.
  await backups.store.refresh();
  const { source, release } = await backups.acquire();
  const progress: BackupProgress = {
    backupId: source.id,
    pid: sender.pid,
    phase: "waiting for checkpoint to finish",
    bytesDone: 0,
    bytesTotal: undefined,
    started: new Date(),
  };
  backups.serving.add(progress);
  // WalSndSetState(WALSNDSTATE_BACKUP): pg_stat_replication shows the client as "backup".
  sender.state = "backup";
  ctx.log.log("info", "sending base backup", {
    pid: sender.pid,
    backup: source.id,
    label: opts.label,
  });
  try {
    await sendBaseBackup({
      client,
      wal: ctx.store,
      source,
      options: opts,
      progress,
      walTimeoutMs: WAL_WAIT_MS,
      signal: ctx.shutdown,
    });
    backups.totals.served++;
  } catch (e) {
    backups.totals.failed++;
    const pe = pgErrorOf(e);
    if (pe instanceof PgError || client.closed || isConnectionError(e)) throw pe;
    throw new PgError(
      SqlState.INTERNAL_ERROR,
      `could not send base backup "${source.id}": ${(e as Error).message}`,
    );
  } finally {
    sender.state = "startup";
    backups.serving.delete(progress);
    release();
  }
}

function isConnectionError(e: unknown): boolean {
  return e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.ConnectionReset ||
    e instanceof Deno.errors.BadResource || e instanceof Deno.errors.Interrupted;
}
