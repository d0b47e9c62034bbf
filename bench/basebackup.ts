/**
 * The base backup benchmark: `pg_basebackup -Ft -X none` of a pgbench database from the relay's
 * store against the same from the primary, alternating, reported as wall-time ratio and the
 * relay's CPU per GB; then the primary's cost of ten edge standbys' backups through the relay
 * (BASE_BACKUPs in its log, its CPU) against one taken from it directly.
 *
 * ```
 * deno run -A bench/basebackup.ts [--scale 70] [--rounds 5]
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import { join } from "node:path";
import { type PgCluster, run, startPrimary, tempDir, waitFor } from "../tests/_pg.ts";
import { startRelayMode } from "../tests/_relay_mode_util.ts";
import { childPids, cpuOf, postmasterPid, procCpu } from "./_proc.ts";
import { median, ratio } from "./_stats.ts";
import { fixed, intOption, mib, table } from "./_util.ts";

/** What {@linkcode runBaseBackupBench} measured. */
export interface BaseBackupReport {
  /** pgbench scale of the database. */
  scale: number;
  /** Bytes of one backup (all archives). */
  backup_bytes: number;
  /** Wall seconds per round, each arm. */
  primary_s: number[];
  /** Wall seconds per round from the relay's store. */
  relay_s: number[];
  /** Median primary time over median relay time: above 1 means the relay is faster. */
  wall_ratio: number;
  /** The relay's CPU seconds per GB served (median round). */
  relay_cpu_s_per_gb: number;
  /** The primary's CPU seconds per backup taken from it directly (median round). */
  primary_cpu_s_per_backup: number;
  /** BASE_BACKUPs the primary ran for ten backups through the relay. */
  primary_backups_for_ten: number;
  /** The primary's CPU seconds while ten backups were taken through the relay. */
  primary_cpu_s_for_ten: number;
}

function countBaseBackups(log: string): number {
  return log.split("\n").filter((l) => /received replication command: BASE_BACKUP/.test(l)).length;
}

async function sizeOf(dir: string): Promise<number> {
  let n = 0;
  for await (const e of Deno.readDir(dir)) {
    if (e.isFile) n += (await Deno.stat(join(dir, e.name))).size;
  }
  return n;
}

/** The CPU of the postmaster's whole tree: itself, its live children, the reaped ones. */
async function primaryCpu(pg: PgCluster): Promise<number> {
  const pm = await postmasterPid(pg.dataDir);
  let live = 0;
  for (const t of (await cpuOf(await childPids(pm))).values()) live += t;
  const p = await procCpu(pm);
  return p.self + p.children + live;
}

async function timedBackup(pg: PgCluster, conninfo: string, target: string): Promise<number> {
  const t0 = performance.now();
  await pg.programs.runOk(
    "pg_basebackup",
    [
      "-d",
      conninfo,
      "-D",
      pg.programs.pgPath(target),
      "-Ft",
      "-X",
      "none",
      "-c",
      "fast",
      "--no-sync",
    ],
    { asPostgres: true, timeoutMs: 1_800_000 },
  );
  return (performance.now() - t0) / 1000;
}

/**
 * Runs the benchmark.
 *
 * @example
 * ```ts ignore
 * const report = await runBaseBackupBench({ scale: 70, rounds: 5 });
 * ```
 */
export async function runBaseBackupBench(
  opts: { scale: number; rounds: number; log?: (line: string) => void },
): Promise<BaseBackupReport> {
  const log = opts.log ?? ((l: string) => console.error(l));
  await using pg = await startPrimary({ conf: { fsync: "off", max_wal_size: "4GB" } });
  log(`pgbench -i -s ${opts.scale} …`);
  await pg.pgbench(["-i", "-s", String(opts.scale), "-q"]);
  await using dir = await tempDir("walrelay-bench-bb-");
  await using relay = await startRelayMode({ walDir: dir.path, upstream: pg.conninfo() });
  await using work = await pg.programs.tempDir("walrelay-bench-bb-out-");
  const target = join(work.path, "out");
  const clear = () => run(["rm", "-rf", target]);

  // The first backup through the relay reads through and stores it.
  log("first backup through the relay (read-through) …");
  const atStart = countBaseBackups(await pg.log());
  await timedBackup(pg, relay.conninfo(), target);
  const readThrough = countBaseBackups(await pg.log()) - atStart;
  const backupBytes = await sizeOf(target);
  await clear();
  await waitFor(async () => {
    const names = await Array.fromAsync(Deno.readDir(join(dir.path, ".walrelay", "backups")));
    return names.some((e) => !e.name.startsWith(".tmp-")) || undefined;
  }, { timeoutMs: 600_000, message: "the backup was not stored" });

  const primaryS: number[] = [];
  const relayS: number[] = [];
  const relayCpu: number[] = [];
  const primaryCpuPer: number[] = [];
  for (let i = 0; i < opts.rounds; i++) {
    const pc0 = await primaryCpu(pg);
    primaryS.push(await timedBackup(pg, pg.conninfo(), target));
    await new Promise((r) => setTimeout(r, 200));
    primaryCpuPer.push(await primaryCpu(pg) - pc0);
    await clear();
    const rc0 = (await procCpu(relay.pid)).self;
    relayS.push(await timedBackup(pg, relay.conninfo(), target));
    await new Promise((r) => setTimeout(r, 200));
    relayCpu.push((await procCpu(relay.pid)).self - rc0);
    await clear();
    log(
      `round ${i + 1}: primary ${fixed(primaryS.at(-1)!)} s, relay ${fixed(relayS.at(-1)!)} s`,
    );
  }

  // Ten edge standbys' backups through the relay: the primary's part.
  const before = countBaseBackups(await pg.log());
  const cpu0 = await primaryCpu(pg);
  for (let i = 0; i < 10; i++) {
    await timedBackup(pg, relay.conninfo(), target);
    await clear();
  }
  const tenCpu = await primaryCpu(pg) - cpu0;
  // The read-through that stored the backup served them all.
  const tenBackups = readThrough + countBaseBackups(await pg.log()) - before;

  const gb = backupBytes / 1e9;
  return {
    scale: opts.scale,
    backup_bytes: backupBytes,
    primary_s: primaryS,
    relay_s: relayS,
    wall_ratio: ratio(median(primaryS), median(relayS)),
    relay_cpu_s_per_gb: median(relayCpu) / gb,
    primary_cpu_s_per_backup: median(primaryCpuPer),
    primary_backups_for_ten: tenBackups,
    primary_cpu_s_for_ten: tenCpu,
  };
}

/** One summary line for the bench's headline. */
export function baseBackupHeadline(r: BaseBackupReport): string {
  return `basebackup: ${mib(r.backup_bytes)} MiB, primary ${fixed(median(r.primary_s))} s vs ` +
    `relay store ${fixed(median(r.relay_s))} s (ratio ${fixed(r.wall_ratio)}), relay ` +
    `${fixed(r.relay_cpu_s_per_gb)} CPU s/GB; ten edge backups cost the primary ` +
    `${r.primary_backups_for_ten} BASE_BACKUP, ${fixed(r.primary_cpu_s_for_ten)} CPU s`;
}

/** The report as a table. */
export function formatBaseBackupReport(r: BaseBackupReport): string {
  return table(["measure", "value"], [
    ["backup size", mib(r.backup_bytes)],
    ["primary, median s", fixed(median(r.primary_s))],
    ["relay store, median s", fixed(median(r.relay_s))],
    ["wall-time ratio (primary / relay)", fixed(r.wall_ratio)],
    ["relay CPU s per GB", fixed(r.relay_cpu_s_per_gb)],
    ["primary CPU s per direct backup", fixed(r.primary_cpu_s_per_backup)],
    ["primary BASE_BACKUPs for 10 via relay", String(r.primary_backups_for_ten)],
    ["primary CPU s for 10 via relay", fixed(r.primary_cpu_s_for_ten)],
  ]);
}

if (import.meta.main) {
  const { values } = parseArgs({
    args: Deno.args,
    options: { scale: { type: "string", default: "70" }, rounds: { type: "string", default: "5" } },
  });
  const usage = "deno run -A bench/basebackup.ts [--scale 70] [--rounds 5]";
  const int = intOption("basebackup", usage);
  const scale = int("scale", values.scale, 1);
  const rounds = int("rounds", values.rounds, 1);
  const report = await runBaseBackupBench({ scale, rounds });
  console.log(formatBaseBackupReport(report));
  console.log(JSON.stringify(report));
}
