/**
 * What relaying one commit costs Deno with nothing of a relay around it: the system calls the
 * relay makes per commit in steady state (seen with `strace -f` during `relay_lag.ts`), from a
 * plain loop in a process of its own, paced as the benchmark's commits are. Per commit it
 *
 * 1. reads the upstream's XLogData (206 bytes for a one-row INSERT);
 * 2. writes its WAL into a zero-filled 16 MiB file, at its place;
 * 3. `fdatasync`s the file;
 * 4. sends the XLogData to the standby;
 * 5. sends a status update to the upstream;
 * 6. reads the standby's three status updates.
 *
 * The driver sends the three updates in one write, so the loop wakes twice per commit. A real
 * standby's come in one to three packets (its write, flush and apply positions), and the relay
 * wakes for each: the floor is a lower bound.
 *
 * The other end of both connections is this module's {@linkcode measureRelayFloor}, in the
 * benchmark's process. It measures the loop's CPU per commit from `/proc`: what any Deno program
 * that relays and syncs each commit pays on this machine, against which the relay's own cost and
 * a cascading standby's can be placed.
 *
 * `deno run -A bench/_relay_floor.ts PORT FILE`: serves one upstream and one standby connection
 * (told apart by their first byte, `u` or `s`), then exits when either closes.
 *
 * @module
 */

import { join } from "node:path";
import { readFull, writeAll } from "../lib/_io.ts";
import { REPO_ROOT, spawnBackground, waitFor } from "../tests/_pg.ts";
import { procCpu } from "./_proc.ts";

/** A one-row INSERT's XLogData, as the relay receives and sends it: 'd', length, 'w', header. */
const XLOG_DATA_BYTES = 206;
/** A standby status update ('d', length, 'r', three LSNs, a time, a flag). */
const STATUS_BYTES = 1 + 4 + 1 + 8 * 4 + 1;
/** The XLogData header before the WAL: 'd', length, 'w', start, end, send time. */
const XLOG_HEADER_BYTES = 1 + 4 + 1 + 8 * 3;
const FILE_BYTES = 16 * 1024 * 1024;

/** What {@linkcode measureRelayFloor} measured. */
export interface RelayFloor {
  /** Measured commits (after the warm-up). */
  commits: number;
  /** CPU (utime + stime) of the floor's process per commit, in microseconds. */
  cpu_us_per_commit: number;
  /** Of which in user space. */
  user_us_per_commit: number;
  /** Of which in the kernel. */
  system_us_per_commit: number;
}

/**
 * Starts the floor's process with its file in `dir`, drives `warmup + commits` commits through
 * it, pausing a random [0.5, 1.5] × `intervalMs` after each as `relay_lag.ts` does, and reads its
 * CPU over the measured ones.
 *
 * @example
 * ```ts ignore
 * import { measureRelayFloor } from "./_relay_floor.ts";
 * const floor = await measureRelayFloor({ dir: "/tmp", commits: 1000, warmup: 50, intervalMs: 5 });
 * console.log(floor.cpu_us_per_commit);
 * ```
 */
export async function measureRelayFloor(
  opts: { dir: string; commits: number; warmup: number; intervalMs: number },
): Promise<RelayFloor> {
  const file = join(opts.dir, "relay-floor.seg");
  await using proc = await spawnBackground([
    Deno.execPath(),
    "run",
    "-A",
    join(REPO_ROOT, "bench", "_relay_floor.ts"),
    "0",
    file,
  ], { cwd: REPO_ROOT });
  let port = 0;
  await waitFor(() => {
    if (proc.exited) throw new Error(`_relay_floor.ts exited:\n${proc.stderr()}`);
    const m = /listening on (\d+)/.exec(proc.stdout());
    if (m) port = Number(m[1]);
    return m !== null;
  }, { timeoutMs: 30_000, intervalMs: 50, message: "_relay_floor.ts did not start" });
  using up = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(up, new TextEncoder().encode("u"));
  using standby = await Deno.connect({ hostname: "127.0.0.1", port });
  await writeAll(standby, new TextEncoder().encode("s"));

  const message = new Uint8Array(XLOG_DATA_BYTES);
  message[0] = 0x64;
  new DataView(message.buffer).setInt32(1, XLOG_DATA_BYTES - 1);
  message[5] = 0x77;
  const replies = new Uint8Array(3 * STATUS_BYTES);
  const got = new Uint8Array(XLOG_DATA_BYTES);
  const feedback = new Uint8Array(STATUS_BYTES);
  let before = await procCpu(proc.pid);
  for (let i = 0; i < opts.warmup + opts.commits; i++) {
    if (i === opts.warmup) before = await procCpu(proc.pid);
    await writeAll(up, message);
    if (await readFull(standby, got) < got.length) throw new Error("floor closed the standby");
    await writeAll(standby, replies);
    if (await readFull(up, feedback) < feedback.length) throw new Error("floor closed upstream");
    const pause = opts.intervalMs * (0.5 + Math.random());
    await new Promise((resolve) => setTimeout(resolve, pause));
  }
  const after = await procCpu(proc.pid);
  const per = (s: number): number => s * 1e6 / opts.commits;
  return {
    commits: opts.commits,
    cpu_us_per_commit: per(after.self - before.self),
    user_us_per_commit: per(after.user - before.user),
    system_us_per_commit: per(after.system - before.system),
  };
}

/** The floor itself: accepts the two connections and relays until either closes. */
async function serve(port: number, path: string): Promise<void> {
  // Zeros written and synced first, as the relay prepares a segment.
  const file = await Deno.open(path, { read: true, write: true, create: true, truncate: true });
  file.writeSync(new Uint8Array(FILE_BYTES));
  file.syncSync();
  const listener = Deno.listen({ hostname: "127.0.0.1", port });
  console.log(`listening on ${(listener.addr as Deno.NetAddr).port}`);
  let up: Deno.Conn | undefined;
  let standby: Deno.Conn | undefined;
  const first = new Uint8Array(1);
  while (!up || !standby) {
    const conn = await listener.accept();
    if (await readFull(conn, first) < 1) conn.close();
    else if (first[0] === 0x75) up = conn;
    else standby = conn;
  }
  listener.close();
  const message = new Uint8Array(XLOG_DATA_BYTES);
  const replies = new Uint8Array(3 * STATUS_BYTES);
  const feedback = new Uint8Array(STATUS_BYTES);
  feedback[0] = 0x64;
  new DataView(feedback.buffer).setInt32(1, STATUS_BYTES - 1);
  feedback[5] = 0x72;
  // The zero fill left the position at the end: WAL goes over the zeros, never past them.
  let pos = FILE_BYTES;
  while (await readFull(up, message) === message.length) {
    const wal = message.subarray(XLOG_HEADER_BYTES);
    if (pos + wal.length > FILE_BYTES) {
      file.seekSync(0, Deno.SeekMode.Start);
      pos = 0;
    }
    let w = 0;
    while (w < wal.length) w += file.writeSync(wal.subarray(w));
    pos += wal.length;
    file.syncDataSync();
    await writeAll(standby, message);
    await writeAll(up, feedback);
    if (await readFull(standby, replies) < replies.length) return;
  }
}

if (import.meta.main) {
  const [port, path] = Deno.args;
  if (port === undefined || path === undefined) {
    console.error("usage: deno run -A bench/_relay_floor.ts PORT FILE");
    Deno.exit(2);
  }
  await serve(Number(port), path);
  Deno.exit(0);
}
