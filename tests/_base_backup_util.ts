// Helpers of the BASE_BACKUP tests: taking a backup with a major's own pg_basebackup, importing
// it into a WAL directory, and checking a result with that major's pg_verifybackup.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type PgCluster,
  type PgPrograms,
  REPO_ROOT,
  run,
  type RunResult,
  type TempDir,
} from "./_pg.ts";

/** Runs `walrelay backup …` from this repository. */
export async function walrelayBackup(args: string[]): Promise<RunResult> {
  return await run([Deno.execPath(), "run", "-A", join(REPO_ROOT, "cli.ts"), "backup", ...args], {
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
  });
}

/** Runs pg_basebackup of `programs` as postgres; `target` is a host path inside a programs temp dir. */
export async function pgBasebackup(
  programs: PgPrograms,
  conninfo: string,
  target: string,
  args: string[],
): Promise<RunResult> {
  return await programs.run(
    "pg_basebackup",
    ["-d", conninfo, "-D", programs.pgPath(target), "--no-sync", ...args],
    { asPostgres: true, timeoutMs: 180_000 },
  );
}

/** pg_basebackup that must succeed; returns its stderr. */
export async function pgBasebackupOk(
  programs: PgPrograms,
  conninfo: string,
  target: string,
  args: string[],
  context = "",
): Promise<string> {
  const r = await pgBasebackup(programs, conninfo, target, args);
  assert.equal(r.code, 0, `pg_basebackup ${args.join(" ")} failed:\n${r.stderr}\n${context}`);
  return r.stderr;
}

/** pg_verifybackup of `programs` on a plain-format backup; must pass. */
export async function verifyBackup(
  programs: PgPrograms,
  dir: string,
  args: string[] = [],
): Promise<void> {
  const r = await programs.run("pg_verifybackup", [...args, programs.pgPath(dir)], {
    asPostgres: true,
    timeoutMs: 120_000,
  });
  assert.equal(r.code, 0, `pg_verifybackup ${dir} failed:\n${r.stdout}${r.stderr}`);
}

/** Extracts a tar file into a directory. */
export async function untar(tarFile: string, dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const r = await run(["tar", "-xf", tarFile, "-C", dir]);
  assert.equal(r.code, 0, r.stderr);
}

/** Gives a whole tree to the programs' `postgres`, so they can read what the test wrote. */
export async function chownTree(programs: PgPrograms, dir: string): Promise<void> {
  await programs.chown(dir);
  for await (const e of Deno.readDir(dir)) {
    const p = join(dir, e.name);
    if (e.isDirectory) await chownTree(programs, p);
    else if (!e.isSymlink) await programs.chown(p);
  }
}

/**
 * A `pg_basebackup -Ft -X none` of `pg` with its manifest, and the primary's WAL (up to past the
 * backup's end) copied into a new WAL directory; the backup is imported there.
 */
export async function importedBackup(
  pg: PgCluster,
  walDir: TempDir,
  work: TempDir,
): Promise<{ tarDir: string; output: string }> {
  const programs = pg.programs;
  const tarDir = join(work.path, "tar");
  await pgBasebackupOk(programs, pg.conninfo(), tarDir, ["-Ft", "-X", "none", "-c", "fast"]);
  // The backup's end switched to a new segment; WAL after it makes the last one complete.
  await pg.sql("SELECT pg_switch_wal()");
  for (const name of await Array.fromAsync(Deno.readDir(pg.walDir))) {
    if (/^[0-9A-F]{24}$/.test(name.name) || name.name.endsWith(".history")) {
      await Deno.copyFile(join(pg.walDir, name.name), join(walDir.path, name.name));
    }
  }
  const r = await walrelayBackup(["import", tarDir, "--wal-dir", walDir.path]);
  assert.equal(r.code, 0, `walrelay backup import failed:\n${r.stderr}`);
  return { tarDir, output: r.stdout };
}
