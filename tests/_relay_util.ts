/**
 * Helpers shared by the relay integration tests (`serve_receivewal_test.ts`, `standby_test.ts`,
 * `slots_test.ts`, `shutdown_test.ts`): copying WAL directories, running `pg_receivewal` against a
 * relay, and a raw protocol client for what real clients cannot do (never read, never reply).
 *
 * @module
 */

import { parseDataRow } from "../lib/pgwire/query_result.ts";
import { parseErrorFields } from "../lib/pgwire/server_error.ts";
import { join } from "node:path";
import {
  type BackgroundProcess,
  copyFiles,
  isRoot,
  isSegmentName,
  type PgCluster,
  pgPrograms,
  REPO_ROOT,
  run,
  type RunResult,
  startPrimary,
  type TempDir,
  tempDir,
  waitFor,
} from "./_pg.ts";

/** What `testdata/wal.json` says about the bundled WAL (the parts the tests use). */
export interface TestdataInfo {
  system_identifier: string;
  segment_size: number;
  timelines: {
    timeline: number;
    switchpoint?: string;
    end_lsn: string;
    first_segment: string;
    segment_end_lsn?: string;
  }[];
  files: { name: string; size: number }[];
}

/** Reads `testdata/wal.json`. */
export async function testdataInfo(): Promise<TestdataInfo> {
  return JSON.parse(await Deno.readTextFile(join(REPO_ROOT, "testdata", "wal.json")));
}

/** Parses `X/X` into a number of bytes. */
export function lsn(text: string): bigint {
  const m = /^([0-9A-Fa-f]+)\/([0-9A-Fa-f]+)$/.exec(text);
  if (!m) throw new Error(`not an LSN: ${text}`);
  return (BigInt(`0x${m[1]}`) << 32n) | BigInt(`0x${m[2]}`);
}

/** Formats a byte position as PostgreSQL prints an LSN. */
export function formatLsn(v: bigint): string {
  return `${(v >> 32n).toString(16).toUpperCase()}/${(v & 0xffffffffn).toString(16).toUpperCase()}`;
}

/**
 * Real WAL made fast: a primary with archiving emits `megabytes` non-transactional logical
 * messages of 1 MB (no table I/O, no compression), switches, waits for the archiver, and the
 * archived segments are copied into a new directory. The primary is gone afterwards.
 */
export async function generateArchive(
  opts: { walSegSize: number; megabytes: number },
): Promise<{ dir: TempDir; names: string[] }> {
  await using pg = await startPrimary({
    walSegSize: opts.walSegSize,
    archive: true,
    conf: { wal_compression: "off", max_wal_size: "1GB", checkpoint_timeout: "1h" },
  });
  await pg.sql(
    "SELECT count(pg_logical_emit_message(false, 'walrelay', repeat(md5(g::text), 32768))) " +
      `FROM generate_series(1, ${opts.megabytes}) g`,
  );
  const last = await pg.switchWal();
  await waitFor(
    async () => (await pg.sql("SELECT last_archived_wal FROM pg_stat_archiver")) >= last,
    { timeoutMs: 120_000, message: `${last} was not archived` },
  );
  const dir = await tempDir("walrelay-generated-");
  try {
    const names = await copyFiles(pg.archiveDir!, dir.path, isSegmentName);
    if (names.at(-1) !== last) throw new Error(`archive ends at ${names.at(-1)}, not ${last}`);
    return { dir, names };
  } catch (e) {
    await dir.remove();
    throw e;
  }
}

/** The LSN where a segment (24-digit name) begins. */
export function segmentStartLsn(name: string, segmentSize: number): bigint {
  return (BigInt(`0x${name.slice(8, 16)}`) << 32n) +
    BigInt(`0x${name.slice(16, 24)}`) * BigInt(segmentSize);
}

/** Creates an empty file, as a `pg_receivewal` start marker (`<segment>.partial`, 0 bytes). */
export async function touch(path: string): Promise<void> {
  await Deno.writeFile(path, new Uint8Array());
}

/** Names of the files in a directory, sorted. */
export async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

/** `pg_receivewal`'s arguments for a relay on `port` (as user `postgres`, verbose). */
function receivewalArgs(port: number, args: string[]): string[] {
  return ["-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "--verbose", ...args];
}

/**
 * The `pg_receivewal` command line for a relay on `port` (as user `postgres`, verbose), of
 * PostgreSQL `major` (default 15; a chroot major's `-D` is a path inside its chroot).
 */
export async function receivewalCmd(
  port: number,
  args: string[],
  major?: number,
): Promise<string[]> {
  return (await pgPrograms(major)).command("pg_receivewal", receivewalArgs(port, args));
}

/** Runs `pg_receivewal` to its end against a relay (a hard timeout keeps a hang from lasting). */
export async function runReceivewal(
  port: number,
  args: string[],
  timeoutMs = 60_000,
  major?: number,
): Promise<RunResult> {
  return await (await pgPrograms(major)).run("pg_receivewal", receivewalArgs(port, args), {
    timeoutMs,
    env: { PGCONNECT_TIMEOUT: "10" },
  });
}

/** Starts `pg_receivewal` (of PostgreSQL `major`, default 15) in the background against a relay. */
export async function spawnReceivewal(
  port: number,
  args: string[],
  major?: number,
): Promise<BackgroundProcess> {
  return await (await pgPrograms(major)).spawn("pg_receivewal", receivewalArgs(port, args), {
    env: { PGCONNECT_TIMEOUT: "10" },
  });
}

/**
 * Runs a command on a `replication=true` connection with `psql` of PostgreSQL `major` (default
 * 15), unaligned, tuples only, VERBOSITY verbose so errors carry their SQLSTATE. Never throws for
 * a failing command.
 */
export async function replPsql(port: number, command: string, major?: number): Promise<RunResult> {
  return await (await pgPrograms(major)).run(
    "psql",
    [
      "-X",
      "-q",
      "-A",
      "-t",
      "-v",
      "ON_ERROR_STOP=1",
      "-v",
      "VERBOSITY=verbose",
      "-d",
      `host=127.0.0.1 port=${port} user=postgres replication=true connect_timeout=10`,
      "-c",
      command,
    ],
    { timeoutMs: 30_000 },
  );
}

/** Like {@linkcode replPsql}, but throws unless it succeeds; returns stdout without the newline. */
export async function replPsqlOk(port: number, command: string, major?: number): Promise<string> {
  const r = await replPsql(port, command, major);
  if (!r.success) throw new Error(`psql ${command} failed (${r.code}): ${r.stdout}${r.stderr}`);
  return r.stdout.replace(/\n$/, "");
}

/** Waits until `server` has archived `segment` (archive_command finished for it). */
export async function waitArchived(server: PgCluster, segment: string): Promise<void> {
  await waitFor(
    async () => (await server.sql("SELECT last_archived_wal FROM pg_stat_archiver")) >= segment,
    { timeoutMs: 60_000, message: `${segment} was not archived` },
  );
}

/** Waits until `dir` holds every one of `names`; fails early when `proc` exits. */
export async function waitForFiles(
  dir: string,
  names: string[],
  opts: { proc?: BackgroundProcess; timeoutMs?: number; sizes?: number } = {},
): Promise<void> {
  await waitFor(
    async () => {
      const have = new Map<string, number>();
      for await (const e of Deno.readDir(dir)) {
        if (e.isFile) have.set(e.name, (await Deno.stat(join(dir, e.name))).size);
      }
      const ok = names.every((n) =>
        have.has(n) && (opts.sizes === undefined || have.get(n) === opts.sizes)
      );
      if (ok) return true;
      if (opts.proc?.exited) {
        throw new Error(`process exited early:\n${opts.proc.stderr()}`);
      }
      return false;
    },
    {
      timeoutMs: opts.timeoutMs ?? 60_000,
      intervalMs: 100,
      message: `${dir} did not get ${names.join(", ")}`,
    },
  );
}

/** Makes a directory the test created readable and writable by `postgres` (for servers). */
export async function chownPostgres(path: string): Promise<void> {
  if (!isRoot()) return;
  await run(["chown", "-R", "postgres:postgres", path]);
}

// ---------------------------------------------------------------------------------------------
// A raw protocol client

/** One backend message. */
export interface BackendMessage {
  type: string;
  body: Uint8Array;
}

/** Fields of an ErrorResponse by code letter (`C` SQLSTATE, `M` message, …). */
export const errorFields: (body: Uint8Array) => Record<string, string> = parseErrorFields;

/** Decodes a DataRow into text values (NULL as `null`). */
export const dataRowValues: (body: Uint8Array) => (string | null)[] = parseDataRow;

/**
 * A bare replication client over TCP: startup as `postgres` with `replication=true`, simple
 * queries, and raw access to the stream, so a test can misbehave on purpose.
 */
export class RawReplClient implements Disposable {
  #conn: Deno.TcpConn;
  #buf = new Uint8Array(0);
  #closed = false;

  private constructor(conn: Deno.TcpConn) {
    this.#conn = conn;
  }

  /** Connects and completes the startup; throws with the server's error if it refuses. */
  static async connect(port: number): Promise<RawReplClient> {
    const conn = await Deno.connect({ hostname: "127.0.0.1", port });
    const c = new RawReplClient(conn);
    try {
      const enc = new TextEncoder();
      const params = enc.encode("user\0postgres\0replication\0true\0\0");
      const pkt = new Uint8Array(8 + params.length);
      new DataView(pkt.buffer).setInt32(0, pkt.length);
      new DataView(pkt.buffer).setInt32(4, 196608);
      pkt.set(params, 8);
      await c.write(pkt);
      while (true) {
        const m = await c.readMessage();
        if (m.type === "E") {
          throw new Error(`startup refused: ${JSON.stringify(errorFields(m.body))}`);
        }
        if (m.type === "Z") return c;
      }
    } catch (e) {
      c.close();
      throw e;
    }
  }

  /** The client's own port, as the server sees it (`client_port`). */
  get localPort(): number {
    return (this.#conn.localAddr as Deno.NetAddr).port;
  }

  /** Writes raw bytes. */
  async write(bytes: Uint8Array): Promise<void> {
    let off = 0;
    while (off < bytes.length) off += await this.#conn.write(bytes.subarray(off));
  }

  /** Sends a simple Query message. */
  async sendQuery(text: string): Promise<void> {
    const q = new TextEncoder().encode(text + "\0");
    const msg = new Uint8Array(5 + q.length);
    msg[0] = 0x51; // 'Q'
    new DataView(msg.buffer).setInt32(1, 4 + q.length);
    msg.set(q, 5);
    await this.write(msg);
  }

  /** Reads one backend message; throws at end of stream. */
  async readMessage(): Promise<BackendMessage> {
    while (true) {
      if (this.#buf.length >= 5) {
        const len = new DataView(this.#buf.buffer, this.#buf.byteOffset).getInt32(1);
        if (this.#buf.length >= 1 + len) {
          const msg = {
            type: String.fromCharCode(this.#buf[0]!),
            body: this.#buf.slice(5, 1 + len),
          };
          this.#buf = this.#buf.slice(1 + len);
          return msg;
        }
      }
      const chunk = new Uint8Array(65536);
      const n = await this.#conn.read(chunk);
      if (n === null) throw new Error("connection closed by server");
      const next = new Uint8Array(this.#buf.length + n);
      next.set(this.#buf);
      next.set(chunk.subarray(0, n), this.#buf.length);
      this.#buf = next;
    }
  }

  /**
   * Runs a query and collects its messages up to ReadyForQuery (or CopyBothResponse, for
   * START_REPLICATION): rows, command tags, and the error if any.
   */
  async query(text: string): Promise<{
    rows: (string | null)[][];
    tags: string[];
    error: Record<string, string> | undefined;
    copyBoth: boolean;
  }> {
    await this.sendQuery(text);
    const rows: (string | null)[][] = [];
    const tags: string[] = [];
    let error: Record<string, string> | undefined;
    while (true) {
      const m = await this.readMessage();
      if (m.type === "D") rows.push(dataRowValues(m.body));
      else if (m.type === "C") tags.push(new TextDecoder().decode(m.body.subarray(0, -1)));
      else if (m.type === "E") error = errorFields(m.body);
      else if (m.type === "W") return { rows, tags, error, copyBoth: true };
      else if (m.type === "Z") return { rows, tags, error, copyBoth: false };
    }
  }

  /** Closes the socket (harmless twice). */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch { /* already closed */ }
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
