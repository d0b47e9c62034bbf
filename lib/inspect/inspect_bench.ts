// Inspect throughput on ~256 MB of real pgbench WAL (16 MB segments):
// `deno bench -A lib/inspect/inspect_bench.ts`. The bench name carries the size; divide it by
// the time per iteration for MB/s. Files are read from the page cache after the first run.
import { inspectWal } from "./inspect.ts";
import { copyWal, withPrimary } from "../../tests/_pg.ts";

const TARGET_BYTES = 256 * 1024 * 1024;

/** pgbench initialisation writes roughly 16 MB of WAL per scale unit. */
async function generate(dir: string): Promise<void> {
  await withPrimary(async (c) => {
    await c.pgbench(["-i", "-s", "19", "-q"]);
    await c.pgbench(["-c", "2", "-t", "2000"]);
    await c.stop();
    await copyWal(c, dir);
  }, {
    walSegSize: 16,
    conf: { fsync: "off", wal_keep_size: "1GB", max_wal_size: "2GB", synchronous_commit: "off" },
  });
}

const dir = await Deno.makeTempDir({ prefix: "walrelay_inspect_bench_" });
await generate(dir);
let bytes = 0;
for await (const e of Deno.readDir(dir)) bytes += (await Deno.stat(`${dir}/${e.name}`)).size;
const first = await inspectWal(dir);
const valid = first.timelines.reduce((n, t) => n + Number(t.validEnd - t.startLsn), 0);
console.log(
  `${(bytes / 2 ** 20).toFixed(0)} MB of files (target ${TARGET_BYTES / 2 ** 20} MB), ` +
    `${(valid / 2 ** 20).toFixed(0)} MB valid, ${first.timelines[0]?.records} records, ` +
    `first run ${(bytes / 2 ** 20 / (first.elapsedMs / 1000)).toFixed(0)} MB/s`,
);

Deno.bench(`inspect ${(bytes / 2 ** 20).toFixed(0)} MB of pgbench WAL`, async () => {
  await inspectWal(dir);
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
