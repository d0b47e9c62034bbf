/**
 * What `pg_test_fsync` says about a filesystem: the price of one `fdatasync` there, which a relay
 * pays before it sends WAL on.
 *
 * @module
 */

import { join } from "node:path";
import { pgBinDir } from "../tests/_pg.ts";
import { loadAverage } from "./_proc.ts";

/** What `pg_test_fsync` said about the filesystem of the relay's WAL directory. */
export interface FsyncTest {
  /** The command line; null when it did not run. */
  command: string | null;
  /** Why there is no figure (not run, binary missing, failed); null when there is. */
  skipped: string | null;
  /** The directory it wrote its test file into (the parent of the relay's WAL directory). */
  dir: string;
  /** Type, mount point and device of that directory's filesystem, from `/proc/self/mounts`. */
  filesystem: string;
  /**
   * µs per `fdatasync` of one 8 kB write: 10⁶ / the ops/sec `pg_test_fsync` printed (it prints
   * the same rounded to whole µs); NaN (`null` in the JSON) when skipped.
   */
  fdatasync_us_per_op: number;
  /** Every method of its "one 8kB write" section, µs/op likewise; methods marked n/a left out. */
  one_8kb_write_us_per_op: Record<string, number>;
  /** `/proc/loadavg` just before it ran. */
  load_average: string;
}

/**
 * The filesystem holding `path`: the longest mount point of `/proc/self/mounts` above it.
 *
 * @example
 * ```ts
 * import { filesystemOf } from "./_pg_test_fsync.ts";
 * console.assert((await filesystemOf("/")).includes(" on /"));
 * ```
 */
export async function filesystemOf(path: string): Promise<string> {
  let real = path;
  try {
    real = await Deno.realPath(path);
    const mounts = await Deno.readTextFile("/proc/self/mounts");
    let best: { mount: string; type: string; source: string } | undefined;
    for (const line of mounts.split("\n")) {
      const [source, rawMount, type] = line.split(" ");
      if (source === undefined || rawMount === undefined || type === undefined) continue;
      const mount = rawMount.replace(
        /\\([0-7]{3})/g,
        (_, o) => String.fromCharCode(parseInt(o, 8)),
      );
      const under = mount === "/" || real === mount || real.startsWith(`${mount}/`);
      // A later line mounted on the same point hides the earlier one.
      if (under && (best === undefined || mount.length >= best.mount.length)) {
        best = { mount, type, source };
      }
    }
    return best === undefined ? "unknown" : `${best.type} on ${best.mount} (${best.source})`;
  } catch (e) {
    return `unknown (${(e as Error).message})`;
  }
}

/**
 * Runs `pg_test_fsync -s 1 -f DIR/pg_test_fsync.out` and stops it (SIGTERM, on which it removes
 * its file) once its first section, one 8 kB write per sync, is complete: the `fdatasync` figure
 * is there, and the rest would take ten more seconds of syncs.
 *
 * @example
 * ```ts ignore
 * const { fdatasync_us_per_op } = await runFsyncTest("/tmp");
 * ```
 */
export async function runFsyncTest(dir: string): Promise<FsyncTest> {
  const result: FsyncTest = {
    command: null,
    skipped: null,
    dir,
    filesystem: await filesystemOf(dir),
    fdatasync_us_per_op: NaN,
    one_8kb_write_us_per_op: {},
    load_average: await loadAverage(),
  };
  let bin: string;
  try {
    bin = join(await pgBinDir(), "pg_test_fsync");
    await Deno.stat(bin);
  } catch (e) {
    result.skipped = `pg_test_fsync not found (${(e as Error).message.split("\n")[0]})`;
    return result;
  }
  const file = join(dir, "pg_test_fsync.out");
  const args = ["-s", "1", "-f", file];
  result.command = `${bin} ${args.join(" ")}`;
  const child = new Deno.Command(bin, { args, stdin: "null", stdout: "piped", stderr: "piped" })
    .spawn();
  const kill = (signal: Deno.Signal): void => {
    try {
      child.kill(signal);
    } catch { /* already gone */ }
  };
  const timer = setTimeout(() => kill("SIGKILL"), 60_000);
  const stderr = new Response(child.stderr).text();
  let out = "";
  let stopped = false;
  try {
    for await (const chunk of child.stdout.pipeThrough(new TextDecoderStream())) {
      out += chunk;
      // Printed when the second section starts: the first one is complete.
      if (!stopped && out.includes("two 8kB writes")) {
        stopped = true;
        kill("SIGTERM");
      }
    }
    await child.status;
  } finally {
    clearTimeout(timer);
    await Deno.remove(file).catch(() => {});
  }
  const first =
    /one 8kB write:[^\n]*\n(?:[^\n]*\n)?([\s\S]*?)(?:\n\s*\n|Compare|$)/.exec(out)?.[1] ?? "";
  for (const m of first.matchAll(/^\s*(\S+)\s+([\d.]+) ops\/sec\s+(\d+) usecs\/op/gm)) {
    result.one_8kb_write_us_per_op[m[1]!] = 1e6 / Number(m[2]);
  }
  const fdatasync = result.one_8kb_write_us_per_op["fdatasync"];
  if (fdatasync === undefined) {
    result.skipped = `no fdatasync figure in its output:\n${out}${await stderr}`.trimEnd();
  } else {
    result.fdatasync_us_per_op = fdatasync;
  }
  return result;
}

/**
 * The figures of a test that did not run, with the reason.
 *
 * @example
 * ```ts
 * import { skippedFsyncTest } from "./_pg_test_fsync.ts";
 * const t = await skippedFsyncTest("/tmp", "not asked for");
 * console.assert(t.command === null && Number.isNaN(t.fdatasync_us_per_op));
 * ```
 */
export async function skippedFsyncTest(dir: string, reason: string): Promise<FsyncTest> {
  return {
    command: null,
    skipped: reason,
    dir,
    filesystem: await filesystemOf(dir),
    fdatasync_us_per_op: NaN,
    one_8kb_write_us_per_op: {},
    load_average: await loadAverage(),
  };
}
