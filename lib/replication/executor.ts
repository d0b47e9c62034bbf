/**
 * The command phase of a replication connection, as `exec_replication_command` runs it: the
 * simple-query loop, and each replication command from IDENTIFY_SYSTEM to the checks that lead
 * into streaming.
 *
 * @module
 */

import { BodyReader } from "../pgwire/body_reader.ts";
import { PgError, SqlState } from "../pgwire/error.ts";
import type { FrontendMessage } from "../pgwire/message_reader.ts";
import {
  commandComplete,
  copyBothResponse,
  dataRow,
  errorResponse,
  readyForQuery,
  resultSet,
  rowDescription,
} from "../pgwire/messages.ts";
import { WalFileMissingError } from "../wal/errors.ts";
import { timelineOf } from "../wal/history.ts";
import { formatLsn, type Lsn } from "../wal/lsn.ts";
import { historyFileName } from "../wal/segment.ts";
import { runBaseBackup } from "./base_backup.ts";
import { parseCommand, type StartPhysicalReplicationCommand, validateSlotName } from "./command.ts";
import type { ClientConnection } from "./connection.ts";
import type { Sender } from "./registry.ts";
import { endOfTimeline, resultColumns, showColumns } from "./result_sets.ts";
import type { SessionContext } from "./session.ts";
import { showSetting } from "./settings.ts";
import type { ReplicationSlot } from "./slots.ts";
import { type CopyEnd, type StreamControl, streamWal } from "./streaming.ts";
import { pgErrorOf } from "./wal_errors.ts";

/**
 * Reads and runs the client's commands until it leaves. An ERROR ends the command and the
 * connection stays usable; a FATAL error, or any other failure, is thrown to the session.
 */
export async function runCommands(
  client: ClientConnection,
  ctx: SessionContext,
  sender: Sender,
  control: StreamControl,
): Promise<void> {
  let skipUntilSync = false;
  let pending: FrontendMessage | undefined;
  while (true) {
    const msg = pending ?? await client.readMessage();
    pending = undefined;
    if (!msg) return;
    if (skipUntilSync && msg.type !== "S") continue;
    switch (msg.type) {
      case "Q": {
        const text = new BodyReader(msg.body).cstring();
        let end: CopyEnd | undefined;
        try {
          end = await execute(client, ctx, sender, control, text);
        } catch (err) {
          const e = pgErrorOf(err);
          if (!(e instanceof PgError) || e.severity === "FATAL") throw e;
          ctx.log.log("info", e.message, { sqlstate: e.code, pid: sender.pid });
          await client.send(errorResponse(e), readyForQuery());
        }
        if (end?.kind === "gone") return;
        if (end?.kind === "message") pending = end.msg;
        break;
      }
      case "X":
        return;
      case "S":
        skipUntilSync = false;
        await client.send(readyForQuery());
        break;
      case "P":
      case "B":
      case "E":
      case "D":
      case "C":
      case "H":
        // As postgres.c: refused, and the rest of the extended-query batch skipped.
        await client.send(errorResponse(
          new PgError(
            SqlState.PROTOCOL_VIOLATION,
            "extended query protocol not supported in a replication connection",
          ),
        ));
        skipUntilSync = true;
        break;
      case "F":
        await client.send(
          errorResponse(
            new PgError(
              SqlState.PROTOCOL_VIOLATION,
              "fastpath function calls not supported in a replication connection",
            ),
          ),
          readyForQuery(),
        );
        break;
      case "d":
      case "c":
      case "f":
        break; // outside COPY these are ignored, per protocol
      default:
        throw PgError.fatal(
          SqlState.PROTOCOL_VIOLATION,
          `invalid frontend message type ${msg.type.charCodeAt(0)}`,
        );
    }
  }
}

/**
 * Executes one query and answers it, ReadyForQuery included.
 *
 * @returns How COPY ended, after START_REPLICATION; nothing after any other command.
 */
async function execute(
  client: ClientConnection,
  ctx: SessionContext,
  sender: Sender,
  control: StreamControl,
  text: string,
): Promise<CopyEnd | undefined> {
  if (ctx.shutdown.aborted) {
    throw new PgError(
      SqlState.OBJECT_NOT_IN_PREREQUISITE_STATE,
      "cannot execute new commands while WAL sender is in stopping mode",
    );
  }
  const cmd = parseCommand(text);
  const { store, slots } = ctx;
  // Columns as a server of the served WAL's major describes them.
  const columns = resultColumns(store.identity.serverMajor);
  switch (cmd.kind) {
    case "IDENTIFY_SYSTEM": {
      const row = [
        store.identity.systemId.toString(),
        String(store.timeline),
        formatLsn(store.endLsn),
        null,
      ];
      await client.send(
        ...resultSet(columns.IDENTIFY_SYSTEM, [row], "IDENTIFY_SYSTEM"),
        readyForQuery(),
      );
      return;
    }
    case "SHOW": {
      const setting = showSetting(cmd.name, store, sender);
      if (!setting) {
        throw new PgError(
          SqlState.UNDEFINED_OBJECT,
          `unrecognized configuration parameter "${cmd.name}"`,
        );
      }
      await client.send(
        ...resultSet(showColumns(setting.name), [[setting.value]], "SHOW"),
        readyForQuery(),
      );
      return;
    }
    case "TIMELINE_HISTORY": {
      // As the walsender: the row description goes out before the file is opened.
      await client.send(rowDescription(columns.TIMELINE_HISTORY));
      let content: Uint8Array;
      try {
        content = await store.historyContent(cmd.timeline);
      } catch (e) {
        if (!(e instanceof WalFileMissingError)) throw e;
        // SendTimeLineHistory opens the file relative to the data directory, and names it so.
        throw new PgError(
          SqlState.UNDEFINED_FILE,
          `could not open file "pg_wal/${e.fileName}": No such file or directory`,
          { routine: "SendTimeLineHistory" },
        );
      }
      await client.send(
        dataRow([historyFileName(cmd.timeline), content]),
        commandComplete("TIMELINE_HISTORY"),
        readyForQuery(),
      );
      return;
    }
    case "READ_REPLICATION_SLOT": {
      const slot = await slots.get(cmd.slot);
      let row: (string | null)[] = [null, null, null];
      if (slot) {
        const lsn = slot.restartLsn;
        row = [
          "physical",
          lsn === undefined ? null : formatLsn(lsn),
          lsn === undefined ? null : String(slot.restartTli ?? timelineOf(store.history, lsn)),
        ];
      }
      await client.send(
        ...resultSet(columns.READ_REPLICATION_SLOT, [row], "READ_REPLICATION_SLOT"),
        readyForQuery(),
      );
      return;
    }
    case "CREATE_REPLICATION_SLOT": {
      if (!cmd.physical) {
        throw new PgError(
          SqlState.FEATURE_NOT_SUPPORTED,
          "logical decoding requires a database connection",
          { hint: "walrelay serves physical replication only." },
        );
      }
      validateSlotName(cmd.slot);
      await slots.create(cmd.slot, {
        temporary: cmd.temporary,
        restartLsn: cmd.reserveWal ? store.endLsn : undefined,
        restartTli: cmd.reserveWal ? store.timeline : undefined,
        activePid: cmd.temporary ? sender.pid : 0,
      });
      await client.send(
        ...resultSet(
          columns.CREATE_REPLICATION_SLOT,
          [[cmd.slot, "0/0", null, null]],
          "CREATE_REPLICATION_SLOT",
        ),
        readyForQuery(),
      );
      return;
    }
    case "DROP_REPLICATION_SLOT": {
      const deadline = Date.now() + ctx.timeouts.sender;
      while (true) {
        const slot = await slots.get(cmd.slot);
        const busy = slot && slot.activePid !== 0 && slot.activePid !== sender.pid;
        if (!cmd.wait || !busy || Date.now() > deadline) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      await slots.drop(cmd.slot, sender.pid);
      await client.send(commandComplete("DROP_REPLICATION_SLOT"), readyForQuery());
      return;
    }
    case "START_REPLICATION":
      if (!cmd.physical) {
        throw new PgError(
          SqlState.FEATURE_NOT_SUPPORTED,
          "logical decoding requires a database connection",
          { hint: "walrelay serves physical replication only." },
        );
      }
      return await startReplication(client, ctx, sender, control, cmd);
    case "BASE_BACKUP":
      await runBaseBackup(client, ctx, sender, cmd.options);
      return;
    case "SQL":
      throw new PgError(
        SqlState.FEATURE_NOT_SUPPORTED,
        "cannot execute SQL commands in WAL sender for physical replication",
        { routine: "exec_replication_command" },
      );
  }
}

/**
 * `StartReplication` of walsender.c: the slot, the timeline and the start point are checked,
 * then COPY both mode begins and the streaming phase runs until COPY ends.
 */
async function startReplication(
  client: ClientConnection,
  ctx: SessionContext,
  sender: Sender,
  control: StreamControl,
  cmd: StartPhysicalReplicationCommand,
): Promise<CopyEnd | undefined> {
  const { store, slots } = ctx;
  let slot: ReplicationSlot | undefined;
  if (cmd.slot !== undefined) slot = await slots.acquire(cmd.slot, sender.pid);
  try {
    const tli = cmd.timeline ?? store.timeline;
    let switchPoint: Lsn | undefined;
    if (tli !== store.timeline) {
      switchPoint = store.endOf(tli);
      if (cmd.lsn > switchPoint) {
        throw new PgError(
          SqlState.INTERNAL_ERROR,
          `requested starting point ${
            formatLsn(cmd.lsn)
          } on timeline ${tli} is not in this server's history`,
          {
            detail: `This server's history forked from timeline ${tli} at ${
              formatLsn(switchPoint)
            }.`,
          },
        );
      }
      if (cmd.lsn === switchPoint) {
        // Nothing to stream on that timeline: tell the client where the next one starts,
        // without entering COPY.
        await client.send(...endOfTimeline(store.history, tli, switchPoint), readyForQuery());
        return;
      }
    }
    await client.send(copyBothResponse());
    if (switchPoint === undefined && cmd.lsn > store.endLsn) {
      throw new PgError(
        SqlState.INTERNAL_ERROR,
        `requested starting point ${
          formatLsn(cmd.lsn)
        } is ahead of the WAL flush position of this server ${formatLsn(store.endLsn)}`,
      );
    }
    return await streamWal(client, ctx, sender, { tli, start: cmd.lsn, slot }, control);
  } finally {
    if (slot) await slots.release(slot.name, sender.pid);
    sender.slot = undefined;
    sender.state = "startup";
  }
}
