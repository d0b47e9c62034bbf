/**
 * What the benchmarks read from `/proc`: a process's CPU times and resident memory, its children,
 * the load average, and the CPU a sender spent on one run (PostgreSQL's walsenders or the relay).
 *
 * @module
 */

import { join } from "node:path";
import { delay, waitFor } from "../tests/_pg.ts";

/** Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux). */
export const CLOCK_TICKS = 100;

/** CPU times of one process, in seconds, from `/proc/<pid>/stat`. */
export interface ProcCpu {
  /** utime + stime of the process (all its threads). */
  self: number;
  /** utime alone: in user space. */
  user: number;
  /** stime alone: in the kernel. */
  system: number;
  /** cutime + cstime: CPU of children it has reaped (waited for). */
  children: number;
}

/**
 * Reads a process's CPU times. The command name (field 2) may hold spaces and parentheses, so the
 * fields are counted from the last `)`.
 *
 * @example
 * ```ts
 * import { procCpu } from "./_proc.ts";
 * const { self } = await procCpu("self");
 * console.assert(self >= 0);
 * ```
 */
export async function procCpu(pid: number | "self"): Promise<ProcCpu> {
  const text = await Deno.readTextFile(`/proc/${pid}/stat`);
  const rest = text.slice(text.lastIndexOf(")") + 2).split(" ");
  // rest[0] is field 3 (state), so field n is rest[n - 3].
  const field = (n: number): number => Number(rest[n - 3]);
  return {
    self: (field(14) + field(15)) / CLOCK_TICKS,
    user: field(14) / CLOCK_TICKS,
    system: field(15) / CLOCK_TICKS,
    children: (field(16) + field(17)) / CLOCK_TICKS,
  };
}

/**
 * Peak and current resident set size of a process, in bytes (`VmHWM`, `VmRSS`).
 *
 * @example
 * ```ts
 * import { procMemory } from "./_proc.ts";
 * const { peak, current } = await procMemory(Deno.pid);
 * console.assert(peak >= current && current > 0);
 * ```
 */
export async function procMemory(pid: number): Promise<{ peak: number; current: number }> {
  const text = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = (key: string): number => {
    const m = new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text);
    return m ? Number(m[1]) * 1024 : NaN;
  };
  return { peak: kb("VmHWM"), current: kb("VmRSS") };
}

/**
 * Process ids of a process's direct children (all its threads' children); empty once it is gone.
 *
 * @example
 * ```ts
 * import { childPids } from "./_proc.ts";
 * console.assert(Array.isArray(await childPids(Deno.pid)));
 * ```
 */
export async function childPids(pid: number): Promise<number[]> {
  const out: number[] = [];
  try {
    for await (const t of Deno.readDir(`/proc/${pid}/task`)) {
      try {
        const text = await Deno.readTextFile(`/proc/${pid}/task/${t.name}/children`);
        for (const p of text.trim().split(/\s+/)) if (p) out.push(Number(p));
      } catch { /* thread gone */ }
    }
  } catch { /* process gone */ }
  return out;
}

/**
 * The first three fields of `/proc/loadavg` (1, 5 and 15 minute load averages).
 *
 * @example
 * ```ts
 * import { loadAverage } from "./_proc.ts";
 * console.assert((await loadAverage()).split(" ").length === 3);
 * ```
 */
export async function loadAverage(): Promise<string> {
  return (await Deno.readTextFile("/proc/loadavg")).split(" ").slice(0, 3).join(" ");
}

/**
 * The postmaster's pid, from the first line of `postmaster.pid` in a data directory.
 *
 * @example
 * ```ts ignore
 * import { postmasterPid } from "./_proc.ts";
 * const pid = await postmasterPid(pg.dataDir);
 * ```
 */
export async function postmasterPid(dataDir: string): Promise<number> {
  return Number((await Deno.readTextFile(join(dataDir, "postmaster.pid"))).split("\n")[0]);
}

/** The two senders the benchmarks compare. */
export type Arm = "postgres" | "walrelay";

/** CPU seconds of one run: the sender's, and the clients' (children this process reaped). */
export interface RunCpu {
  /** The walsender backends of the run, or the relay process. */
  sender_cpu_s: number;
  /** The clients this process ran and waited for (`pg_receivewal`). */
  client_cpu_s: number;
}

/** Readings taken before a run, finished by {@linkcode RunCpuMeter.finish} after it. */
export interface RunCpuMeter {
  /**
   * The CPU the run cost. For PostgreSQL it waits until every postmaster child that was not there
   * before the run is gone, then reads the postmaster's `cutime + cstime`; for the relay it waits
   * `settleMs`, then reads the relay's `utime + stime`.
   */
  finish(arm: Arm, timing: { reapTimeoutMs: number; settleMs: number }): Promise<RunCpu>;
}

/**
 * Starts measuring one run's sender and client CPU.
 *
 * A walsender's CPU reaches the postmaster's `cutime` only once the postmaster reaps it, which is
 * exact and needs no polling that would disturb the run; a zombie is still listed among the
 * children (with an empty cmdline), so waiting for the new children to disappear waits for the
 * reaping. The relay's session says goodbye (CopyDone, close) after the client exits, so its CPU
 * is read after a short pause to count that too.
 *
 * @example
 * ```ts ignore
 * import { startRunCpu } from "./_proc.ts";
 * const meter = await startRunCpu(await postmasterPid(pg.dataDir), relay.pid);
 * await run(receivewalCommand);
 * const { sender_cpu_s } = await meter.finish("postgres", { reapTimeoutMs: 10_000, settleMs: 100 });
 * ```
 */
export async function startRunCpu(postmaster: number, relayPid: number): Promise<RunCpuMeter> {
  const before = {
    pmChildren: new Set(await childPids(postmaster)),
    pm: await procCpu(postmaster),
    relay: await procCpu(relayPid),
    self: await procCpu("self"),
  };
  return {
    async finish(arm, { reapTimeoutMs, settleMs }): Promise<RunCpu> {
      let sender_cpu_s: number;
      if (arm === "postgres") {
        await waitFor(
          async () => (await childPids(postmaster)).every((p) => before.pmChildren.has(p)),
          { timeoutMs: reapTimeoutMs, intervalMs: 10, message: "the walsenders were not reaped" },
        );
        sender_cpu_s = (await procCpu(postmaster)).children - before.pm.children;
      } else {
        await delay(settleMs);
        sender_cpu_s = (await procCpu(relayPid)).self - before.relay.self;
      }
      const client_cpu_s = (await procCpu("self")).children - before.self.children;
      return { sender_cpu_s, client_cpu_s };
    },
  };
}

/** CPU seconds (`utime + stime`) of some processes, by pid. */
export type CpuByPid = Map<number, number>;

/**
 * Reads the CPU of each process; one that is gone is left out, which makes
 * {@linkcode cpuBetween} NaN.
 *
 * @example
 * ```ts
 * import { cpuOf } from "./_proc.ts";
 * console.assert((await cpuOf([Deno.pid])).has(Deno.pid));
 * ```
 */
export async function cpuOf(pids: readonly number[]): Promise<CpuByPid> {
  const m: CpuByPid = new Map();
  for (const pid of pids) {
    try {
      m.set(pid, (await procCpu(pid)).self);
    } catch { /* gone */ }
  }
  return m;
}

/**
 * CPU seconds between two readings of the same processes; NaN if any came or went.
 *
 * @example
 * ```ts
 * import { cpuBetween } from "./_proc.ts";
 * console.assert(cpuBetween(new Map([[7, 1]]), new Map([[7, 1.5]])) === 0.5);
 * console.assert(Number.isNaN(cpuBetween(new Map([[7, 1]]), new Map())));
 * ```
 */
export function cpuBetween(before: CpuByPid, after: CpuByPid): number {
  if (before.size === 0 || before.size !== after.size) return NaN;
  let sum = 0;
  for (const [pid, t] of before) {
    const t2 = after.get(pid);
    if (t2 === undefined) return NaN;
    sum += t2 - t;
  }
  return sum;
}

/** Memory of a group of processes, in bytes, from `/proc/<pid>/smaps_rollup`. */
export interface TreeMemory {
  /** Processes counted. */
  processes: number;
  /**
   * Sum of `Pss`: each shared page divided among the processes mapping it, so the sum is what
   * the group holds (shared buffers counted once), not `processes` times.
   */
  pss: number;
  /** Sum of `Private_Clean + Private_Dirty`: what each process holds alone. */
  private: number;
}

/**
 * Proportional and private memory of a process and its direct children (a postmaster and its
 * backends), but those in `skip`; a process that exits meanwhile is left out.
 *
 * @example
 * ```ts
 * import { treeMemory } from "./_proc.ts";
 * const m = await treeMemory(Deno.pid);
 * console.assert(m.processes >= 1 && m.pss > 0);
 * ```
 */
export async function treeMemory(
  pid: number,
  options: { skip?: ReadonlySet<number> } = {},
): Promise<TreeMemory> {
  const out: TreeMemory = { processes: 0, pss: 0, private: 0 };
  for (const p of [pid, ...await childPids(pid)]) {
    if (options.skip?.has(p)) continue;
    let text: string;
    try {
      text = await Deno.readTextFile(`/proc/${p}/smaps_rollup`);
    } catch {
      continue; // gone
    }
    const kb = (key: string): number =>
      Number(new RegExp(`^${key}:\\s+(\\d+) kB`, "m").exec(text)?.[1] ?? 0) * 1024;
    out.processes++;
    out.pss += kb("Pss");
    out.private += kb("Private_Clean") + kb("Private_Dirty");
  }
  return out;
}

/**
 * Throws unless this process may open `needed` files. Deno raises its soft limit to the hard one
 * at startup, and processes started afterwards (the relay) inherit it; a hard limit below
 * `needed` has to be raised outside (`ulimit -Hn`).
 *
 * @example
 * ```ts
 * import { checkOpenFiles } from "./_proc.ts";
 * console.assert(await checkOpenFiles(64) >= 64);
 * ```
 */
export async function checkOpenFiles(needed: number): Promise<number> {
  const m = /^Max open files\s+(\S+)/m.exec(await Deno.readTextFile("/proc/self/limits"));
  const soft = m?.[1] === "unlimited" ? Infinity : Number(m?.[1]);
  if (!(soft >= needed)) {
    throw new Error(`${needed} open files needed, the limit is ${soft}: raise it (ulimit -n)`);
  }
  return soft;
}
