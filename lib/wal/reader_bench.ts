// Validation throughput on real WAL from pgbench: `deno bench -A lib/wal/reader_bench.ts`.
// Divide the WAL size in the bench name by the time per iteration for GB/s.
import { WalValidator } from "./reader.ts";
import { parseWalFileName, segmentStart } from "./segment.ts";
import { copyWal, withPrimary } from "../../tests/_pg.ts";

const SEG = 1 << 20;

/** pgbench's WAL: initialisation (bulk COPY, index builds), then its TPC-B-like transactions. */
async function pgbenchWal(): Promise<{ lsn: bigint; bytes: Uint8Array }[]> {
  const dir = await Deno.makeTempDir({ prefix: "walrelay_bench_" });
  try {
    const names = await withPrimary(async (c) => {
      await c.pgbench(["-i", "-s", "2", "-q"]);
      await c.sql("checkpoint");
      await c.pgbench(["-c", "2", "-t", "3000"]);
      await c.stop();
      return await copyWal(c, dir);
    }, {
      walSegSize: 1,
      conf: { fsync: "off", wal_keep_size: "256MB", synchronous_commit: "off" },
    });
    const segs = [];
    for (const name of names) {
      const info = parseWalFileName(name, SEG);
      if (info?.kind !== "segment") continue;
      segs.push({
        lsn: segmentStart(info.segno, SEG),
        bytes: await Deno.readFile(`${dir}/${name}`),
      });
    }
    return segs;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const segs = await pgbenchWal();
const start = segs[0]!.lsn;

function validate(): bigint {
  const v = new WalValidator({ segmentSize: SEG, magic: 0xD110, start });
  for (const s of segs) v.push(s.lsn, s.bytes);
  return v.validEnd;
}

const validBytes = Number(validate() - start);
const mb = (validBytes / 1e6).toFixed(1);

Deno.bench(`validate ${mb} MB of pgbench WAL, one push per segment`, () => {
  validate();
});

Deno.bench(`validate ${mb} MB of pgbench WAL, 8 kB pushes`, () => {
  const v = new WalValidator({ segmentSize: SEG, magic: 0xD110, start });
  for (const s of segs) {
    for (let off = 0; off < SEG && !v.error; off += 8192) {
      v.push(s.lsn + BigInt(off), s.bytes.subarray(off, off + 8192));
    }
    if (v.error) break;
  }
});

let records = 0;
Deno.bench(`validate ${mb} MB of pgbench WAL with onRecord`, () => {
  const v = new WalValidator({ segmentSize: SEG, magic: 0xD110, start, onRecord: () => records++ });
  for (const s of segs) v.push(s.lsn, s.bytes);
});
