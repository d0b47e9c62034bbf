/**
 * The relay's ceiling with one sender thread and with more (`--workers`): `--clients` cheap
 * clients (`_cheap_clients.ts`: they read the stream and drop it, in `--client-procs` processes)
 * pull the same `--size-mb` of WAL from a directory at once, through a relay started with each
 * `--workers` count in turn, order alternating by round, after a warm-up round so the WAL is in
 * the page cache. Per run: wall time until the last client has all of it, the WAL delivered per
 * second over every client, and the relay's CPU (`utime + stime` of its process, every thread).
 *
 * ```
 * deno run -A bench/workers.ts [--size-mb 256] [--clients 24] [--client-procs 2] [--rounds 3]
 *                              [--workers 1,2] [--floor]
 * ```
 *
 * `--floor` adds two arms that are not walrelay (`_send_floor.ts`): the same clients pulling the
 * same number of bytes from a server that only writes the relay's runs framed once, from a plain
 * loop (`floor`) and through a Web Streams pipeline of the relay's shape (`floor+streams`). Their
 * CPU is what sending costs Deno at all; the relay's CPU over it is the relay's own.
 *
 * It measures and prints; it never asserts a speed.
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import {
  type BackgroundProcess,
  freePort,
  REPO_ROOT,
  spawnBackground,
  tempDir,
  waitFor,
} from "../tests/_pg.ts";
import { loadAverage, procCpu } from "./_proc.ts";
import {
  copySegments,
  describeGeneratedWal,
  generateWal,
  SEG_SIZE,
  startDenoRelay,
  startWalPrimary,
} from "./_setup.ts";
import { median } from "./_stats.ts";
import { fixed, formatLsn, intOption, MIB, mib, table } from "./_util.ts";

const USAGE = `usage: deno run -A bench/workers.ts [--size-mb 256] [--clients 24] [--client-procs 2]
                                    [--rounds 3] [--workers 1,2] [--floor]`;

/** What the clients pull from: a relay with `--workers N`, or one of the floor's servers. */
type Arm = number | "floor" | "floor+streams";

interface Run {
  workers: Arm;
  seconds: number;
  relayCpu: number;
  clientCpu: number;
  bytes: number;
}

/** One round against one relay: every client process at once, until each has all the WAL. */
async function pullAll(
  port: number,
  clients: number,
  procs: number,
  wal: { tli: number; start: bigint; end: bigint },
): Promise<{ seconds: number; bytes: number; clientCpu: number }> {
  const outputs = await Promise.all(
    Array.from({ length: procs }, (_, i) => {
      const n = Math.floor(clients / procs) + (i < clients % procs ? 1 : 0);
      return new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          join(REPO_ROOT, "bench", "_cheap_clients.ts"),
          String(port),
          String(n),
          String(wal.tli),
          formatLsn(wal.start),
          formatLsn(wal.end),
        ],
        stdout: "piped",
        stderr: "piped",
      }).output();
    }),
  );
  // Each process times itself from its first connection, so starting Deno is left out.
  let seconds = 0;
  let bytes = 0;
  let clientCpu = 0;
  for (const o of outputs) {
    if (!o.success) throw new Error(`clients failed: ${new TextDecoder().decode(o.stderr)}`);
    const r = JSON.parse(new TextDecoder().decode(o.stdout));
    seconds = Math.max(seconds, r.seconds);
    bytes += r.bytes;
    clientCpu += r.cpu;
  }
  return { seconds, bytes, clientCpu };
}

function armName(arm: Arm): string {
  return typeof arm === "number" ? `--workers ${arm}` : arm;
}

/** Starts `_send_floor.ts` in `mode` and waits until it accepts connections. */
async function startFloor(mode: "bare" | "streams"): Promise<BackgroundProcess & { port: number }> {
  const port = await freePort();
  const proc = await spawnBackground([
    Deno.execPath(),
    "run",
    "-A",
    join(REPO_ROOT, "bench", "_send_floor.ts"),
    String(port),
    mode,
  ], { cwd: REPO_ROOT });
  await waitFor(async () => {
    if (proc.exited) throw new Error(`_send_floor.ts exited:\n${proc.stderr()}`);
    try {
      (await Deno.connect({ hostname: "127.0.0.1", port })).close();
      return true;
    } catch {
      return false;
    }
  }, { timeoutMs: 30_000, intervalMs: 100, message: `_send_floor.ts did not listen on ${port}` });
  return Object.assign(proc, { port });
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: {
      "size-mb": { type: "string", default: "256" },
      clients: { type: "string", default: "24" },
      "client-procs": { type: "string", default: "2" },
      rounds: { type: "string", default: "3" },
      workers: { type: "string", default: "1,2" },
      floor: { type: "boolean", default: false },
    },
  });
  const int = intOption("workers", USAGE);
  const sizeMb = int("size-mb", values["size-mb"], 16);
  const clients = int("clients", values.clients, 1);
  const procs = int("client-procs", values["client-procs"], 1);
  const rounds = int("rounds", values.rounds, 1);
  const counts: Arm[] = values.workers.split(",").map((w) => int("workers", w, 1));
  if (values.floor) counts.push("floor", "floor+streams");
  console.log(`load average at start: ${await loadAverage()}`);

  await using work = await tempDir("walrelay-bench-workers-");
  const walDir = join(work.path, "wal");
  let wal: { tli: number; start: bigint; end: bigint };
  {
    await using pg = await startWalPrimary({
      keepMb: sizeMb * 2 + 256,
      maxWalSenders: 10,
      sharedBuffers: "128MB",
    });
    const g = await generateWal(pg, sizeMb, SEG_SIZE);
    console.log(describeGeneratedWal(g, "serving"));
    await copySegments(pg.walDir, g.segNames, walDir);
    wal = { tli: g.tli, start: (g.startLsn / BigInt(SEG_SIZE)) * BigInt(SEG_SIZE), end: g.endLsn };
  }

  const runs: Run[] = [];
  // Round 0 warms the page cache and is not counted.
  for (let round = 0; round <= rounds; round++) {
    const order = round % 2 === 0 ? counts : [...counts].reverse();
    for (const workers of order) {
      await using relay = typeof workers === "number"
        ? await startDenoRelay({
          cli: join(REPO_ROOT, "cli.ts"),
          walDir,
          args: ["--workers", String(workers), "--max-senders", String(clients + 10)],
          cpuProfDir: undefined,
        })
        : await startFloor(workers === "floor" ? "bare" : "streams");
      const before = (await procCpu(relay.pid)).self;
      const { seconds, bytes, clientCpu } = await pullAll(relay.port, clients, procs, wal);
      const relayCpu = (await procCpu(relay.pid)).self - before;
      const label = round === 0 ? "warm-up" : `round ${round}`;
      console.log(
        `${label}: ${armName(workers)}: ${fixed(seconds)} s, ` +
          `${fixed(bytes / MIB / seconds, 0)} MiB/s, relay CPU ${fixed(relayCpu)} s, ` +
          `clients' CPU ${fixed(clientCpu)} s`,
      );
      if (round > 0) runs.push({ workers, seconds, relayCpu, clientCpu, bytes });
    }
  }

  const rows = counts.map((workers) => {
    const mine = runs.filter((r) => r.workers === workers);
    const seconds = median(mine.map((r) => r.seconds));
    const cpu = median(mine.map((r) => r.relayCpu));
    const clientCpu = median(mine.map((r) => r.clientCpu));
    const bytes = mine[0]!.bytes;
    return [
      typeof workers === "number" ? String(workers) : workers,
      fixed(seconds),
      fixed(bytes / MIB / seconds, 0),
      fixed(cpu),
      fixed(cpu / (bytes / (1024 * MIB))),
      fixed(clientCpu),
    ];
  });
  console.log(
    `\n${clients} clients × ${mib(Number(wal.end - wal.start))} MiB from a directory, ` +
      `medians of ${rounds} rounds:\n` +
      table(
        [
          "workers",
          "wall s",
          "MiB/s delivered",
          "relay CPU s",
          "relay CPU s/GiB",
          "clients' CPU s",
        ],
        rows,
      ),
  );
  const base = runs.filter((r) => r.workers === counts[0]);
  const relays = counts.filter((w) => typeof w === "number");
  for (const workers of relays.slice(1)) {
    const mine = runs.filter((r) => r.workers === workers);
    console.log(
      `wall ratio --workers ${counts[0]} / --workers ${workers}: ` +
        fixed(median(base.map((r) => r.seconds)) / median(mine.map((r) => r.seconds))),
    );
  }
  // CPU per byte: the floors pull as many bytes, give or take the last run.
  const perGiB = (arm: Arm): number => {
    const mine = runs.filter((r) => r.workers === arm);
    return median(mine.map((r) => r.relayCpu / (r.bytes / (1024 * MIB))));
  };
  for (const floor of counts.filter((w) => typeof w !== "number")) {
    for (const workers of relays) {
      console.log(
        `CPU per GiB ${floor} / --workers ${workers}: ${fixed(perGiB(floor) / perGiB(workers))}`,
      );
    }
  }
  console.log(`load average at end: ${await loadAverage()}`);
}
