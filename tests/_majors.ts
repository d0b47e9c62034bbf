/**
 * Helpers of the compatibility matrix (`majors_*_test.ts`): the majors it covers, an archive that
 * a major writes across a timeline switch, and a wire-level view of what a server (or the relay)
 * says at startup and in a result set, down to what `psql` does not show (type lengths, typmods,
 * the order of ParameterStatus, NegotiateProtocolVersion, the cancel key's length).
 *
 * @module
 */

import assert from "node:assert/strict";
import { join } from "node:path";
import { isDeepStrictEqual } from "node:util";
import { writeAll } from "../lib/_io.ts";
import { PgClient } from "../lib/pgwire/client.ts";
import { BodyReader } from "../lib/pgwire/body_reader.ts";
import { MessageReader } from "../lib/pgwire/message_reader.ts";
import { MessageBuilder } from "../lib/pgwire/messages.ts";
import { parseCommandTag, parseDataRow } from "../lib/pgwire/query_result.ts";
import { parseErrorFields } from "../lib/pgwire/server_error.ts";
import {
  basebackup,
  copyFiles,
  isSegmentName,
  type PgCluster,
  type PgPrograms,
  startPrimary,
  startStandby,
  tempDir,
} from "./_pg.ts";
import { lsn, waitArchived } from "./_relay_util.ts";

/** The majors of the matrix: every one a Debian release ships (16 is supported by magic only). */
export const MAJORS: readonly number[] = [15, 17, 18];

/** Server settings that keep the matrix fast; none changes a byte of what is compared. */
export const FAST_CONF: Record<string, string> = { fsync: "off" };

/** A history file or a complete segment: what a client must receive byte for byte. */
export function isArchiveFile(name: string): boolean {
  return isSegmentName(name) || /^[0-9A-F]{8}\.history$/.test(name);
}

/** WAL that a major wrote across a timeline switch, and the server that now runs timeline 2. */
export interface TimelineArchive extends AsyncDisposable {
  /** The major that wrote it. */
  readonly major: number;
  /** That major's programs. */
  readonly programs: PgPrograms;
  /**
   * The archive (a host path): timeline 1's segments, the switch segment's timeline-1 part as a
   * `.partial`, `00000002.history` and timeline 2's segments.
   */
  readonly dir: string;
  /** The promoted server, still running on timeline 2: the real thing the relay is held to. */
  readonly server: PgCluster;
  /** Where timeline 2 begins (from the history file). */
  readonly switchpoint: bigint;
  /** The last segment archived, on timeline 2. */
  readonly last: string;
}

/**
 * Makes a {@linkcode TimelineArchive} with `major`'s own programs: a primary that archives, a
 * standby of it that takes over (fast shutdown of the primary, promotion) and archives timeline 2
 * into the same directory, with rows written on both timelines.
 */
export async function timelineArchive(major: number): Promise<TimelineArchive> {
  const stack = new AsyncDisposableStack();
  try {
    const p1 = stack.use(
      await startPrimary({ major, walSegSize: 1, archive: true, conf: FAST_CONF }),
    );
    await p1.sql("CREATE TABLE t (x int PRIMARY KEY, v text)");
    await p1.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 10000) g");
    const sBackup = stack.use(await basebackup(p1));
    // S inherits P1's archive_command; archive_mode=on archives only once S is promoted.
    const s = stack.use(
      await startStandby({
        dataDir: sBackup.dataDir,
        primaryConninfo: p1.conninfo({ application_name: "to_promote" }),
        conf: { archive_mode: "on" },
      }),
    );
    await p1.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(10001, 20000) g");
    await s.waitForReplay(await p1.currentLsn());
    // A fast shutdown sends S everything and archives every complete timeline-1 segment.
    await p1.stop("fast");
    await s.promote();
    await s.sql("INSERT INTO t SELECT g, md5(g::text) FROM generate_series(20001, 30000) g");
    const last = await s.switchWal();
    if (!last.startsWith("00000002")) throw new Error(`promotion left ${last} on timeline 1`);
    await waitArchived(s, last);
    const dir = p1.archiveDir!;
    const history = await Deno.readTextFile(join(dir, "00000002.history"));
    const switchpoint = lsn(history.split("\t")[1] ?? "");
    const owned = stack.move();
    return {
      major,
      programs: p1.programs,
      dir,
      server: s,
      switchpoint,
      last,
      [Symbol.asyncDispose]: () => owned.disposeAsync(),
    };
  } catch (e) {
    await stack.disposeAsync();
    throw e;
  }
}

/** Copies an archive into a new host directory for the relay to serve; disposing removes it. */
export async function relayCopy(
  archive: TimelineArchive,
): Promise<AsyncDisposable & { path: string }> {
  const dir = await tempDir("walrelay-majors-serve-");
  try {
    await copyFiles(archive.dir, dir.path);
    return dir;
  } catch (e) {
    await dir.remove();
    throw e;
  }
}

/** A RowDescription field as it travels: everything but the format, which is text here. */
export interface WireField {
  /** Column name. */
  name: string;
  /** Table OID (0 for a walsender's result sets). */
  tableOid: number;
  /** Column number (0 likewise). */
  column: number;
  /** Type OID. */
  typeOid: number;
  /** `typlen`. */
  typeLen: number;
  /** `atttypmod`. */
  typeMod: number;
  /** Format code. */
  format: number;
}

/** A simple query's answer as it travels. */
export interface WireResult {
  /** Each RowDescription's fields. */
  descriptions: WireField[][];
  /** DataRows, text values (`null` = NULL). */
  rows: (string | null)[][];
  /** CommandComplete tags. */
  tags: string[];
  /** The ErrorResponse's fields, if one came. */
  error: Record<string, string> | undefined;
}

function parseFields(body: Uint8Array): WireField[] {
  const r = new BodyReader(body);
  const count = r.int16();
  const fields: WireField[] = [];
  for (let i = 0; i < count; i++) {
    fields.push({
      name: r.cstring(),
      tableOid: r.int32(),
      column: r.int16(),
      typeOid: r.int32(),
      typeLen: r.int16(),
      typeMod: r.int32(),
      format: r.int16(),
    });
  }
  return fields;
}

/**
 * Runs `command` on a new `replication=true` connection (as `postgres`) with the project's own
 * client, and returns the messages it answered with, field by field.
 */
export async function wireQuery(port: number, command: string): Promise<WireResult> {
  await using client = await PgClient.connect({
    hostname: "127.0.0.1",
    port,
    user: "postgres",
    connectTimeoutMs: 10_000,
  });
  await client.write(new MessageBuilder("Q").cstring(command).finish());
  const result: WireResult = { descriptions: [], rows: [], tags: [], error: undefined };
  while (true) {
    const m = await client.nextRaw();
    if (m.type === "T") result.descriptions.push(parseFields(m.body));
    else if (m.type === "D") result.rows.push(parseDataRow(m.body));
    else if (m.type === "C") result.tags.push(parseCommandTag(m.body));
    else if (m.type === "E") result.error = parseErrorFields(m.body);
    else if (m.type === "Z") return result;
  }
}

/** What a server answered to a StartupMessage, up to ReadyForQuery or an error. */
export interface StartupView {
  /** Message types in order (`v`, `R`, `S`, `K`, `Z`, `E`). */
  types: string[];
  /** ParameterStatus pairs in the order sent. */
  parameters: [string, string][];
  /** NegotiateProtocolVersion's version word and unrecognized options, if sent. */
  negotiate: { version: number; unrecognized: string[] } | undefined;
  /** The BackendKeyData secret key's length in bytes (4 in protocol 3.0, 32 from an 18 on 3.2). */
  keyLength: number | undefined;
  /** The ErrorResponse's fields, if the startup failed. */
  error: Record<string, string> | undefined;
}

/** Protocol 3.0, what every libpq sends by default. */
export const PROTOCOL_3_0 = 0x30000;
/** Protocol 3.2, what libpq 18 sends when told to (`max_protocol_version=3.2`). */
export const PROTOCOL_3_2 = 0x30002;

/**
 * Sends a StartupMessage of `version` (default 3.0) with `user` (default `postgres`) and `params`
 * (default `database=replication replication=true`, as pg_receivewal); records the answer.
 */
export async function startupView(
  port: number,
  opts: { version?: number; user?: string; params?: Record<string, string> } = {},
): Promise<StartupView> {
  using conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const packet = new MessageBuilder(null).int32(opts.version ?? PROTOCOL_3_0)
    .cstring("user").cstring(opts.user ?? "postgres");
  const params = opts.params ?? { database: "replication", replication: "true" };
  for (const [k, v] of Object.entries(params)) packet.cstring(k).cstring(v);
  await writeAll(conn, packet.byte(0).finish());

  const reader = new MessageReader(conn);
  const view: StartupView = {
    types: [],
    parameters: [],
    negotiate: undefined,
    keyLength: undefined,
    error: undefined,
  };
  while (true) {
    const m = await reader.readMessage(() => 1 << 20);
    if (m === null) return view;
    view.types.push(m.type);
    const r = new BodyReader(m.body);
    if (m.type === "S") view.parameters.push([r.cstring(), r.cstring()]);
    else if (m.type === "K") view.keyLength = m.body.length - 4;
    else if (m.type === "E") view.error = parseErrorFields(m.body);
    else if (m.type === "v") {
      const version = r.int32();
      const unrecognized: string[] = [];
      for (let n = r.int32(); n > 0; n--) unrecognized.push(r.cstring());
      view.negotiate = { version, unrecognized };
    }
    if (m.type === "Z" || m.type === "E") {
      // Terminate, so a real server logs a clean end rather than an EOF.
      await conn.write(new MessageBuilder("X").finish()).catch(() => {});
      return view;
    }
  }
}

/**
 * The differences between the relay's answers and a real server's, collected so that one run
 * lists all of them rather than stopping at the first.
 */
export class Differences {
  /** What differed, with both answers. */
  readonly found: { what: string; relay: unknown; real: unknown }[] = [];

  /** Records a difference unless `relay` and `real` are deeply equal; says whether they were. */
  check(what: string, relay: unknown, real: unknown): boolean {
    if (isDeepStrictEqual(relay, real)) return true;
    this.found.push({ what, relay, real });
    return false;
  }

  /** Throws, listing every difference, if there was any. */
  assertNone(context: string): void {
    assert.deepEqual(this.found, [], context);
  }
}
