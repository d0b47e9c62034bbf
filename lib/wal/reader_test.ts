import assert from "node:assert/strict";
import { validateFiles, type WalRecordInfo, WalValidator } from "./reader.ts";
import { formatLsn, parseLsn } from "./lsn.ts";
import { rmgrName } from "./record_header.ts";
import { parseWalFileName, segmentFileName, segmentStart } from "./segment.ts";
import { copyWal, withPrimary } from "../../tests/_pg.ts";
import { type Dump, type Rec, waldump } from "./_waldump_oracle.ts";

const SEG = 1 << 20;
const BLCKSZ = 8192;

/** deepEqual of long lists, reporting the first difference rather than a diff of thousands. */
function sameRecords(actual: Rec[], expected: Rec[], message?: string): void {
  const n = Math.min(actual.length, expected.length);
  for (let i = 0; i < n; i++) {
    assert.deepEqual(actual[i], expected[i], `record ${i} differs ${message ?? ""}`);
  }
  assert.equal(actual.length, expected.length, `record count ${message ?? ""}`);
}

function toRec(r: WalRecordInfo): Rec {
  return {
    lsn: formatLsn(r.lsn),
    rmgr: rmgrName(r.rmid),
    tot: r.totLen,
    prev: formatLsn(r.prev),
    xid: r.xid,
  };
}

async function segmentFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (parseWalFileName(e.name, SEG)?.kind === "segment") names.push(e.name);
  }
  return names.sort().map((n) => `${dir}/${n}`);
}

async function ours(
  dir: string,
): Promise<{ records: Rec[]; validEnd: bigint; error: string | undefined }> {
  const records: Rec[] = [];
  const r = await validateFiles(await segmentFiles(dir), {
    onRecord: (x) => records.push(toRec(x)),
  });
  // The count kept without a callback: valid records only, a failed one not among them.
  assert.equal(r.records, records.length);
  return { records, validEnd: r.validEnd, error: r.error?.message };
}

/** Runs both readers on `dir` and checks they agree on every record and on where WAL ends. */
async function agree(
  dir: string,
  start: bigint,
  opts: { end?: bigint; expectError?: boolean } = {},
): Promise<{ dump: Dump; validEnd: bigint; error: string | undefined }> {
  const dump = await waldump(dir, start, opts.end);
  const mine = await ours(dir);
  sameRecords(mine.records, dump.records);
  assert.equal(formatLsn(mine.validEnd), formatLsn(dump.end));
  if (dump.stderr.includes("could not find a valid record after")) {
    assert.equal(mine.records.length, 0);
    assert.ok(mine.error !== undefined);
  } else {
    assert.equal(mine.error, dump.error, dump.stderr);
  }
  if (opts.expectError !== undefined) assert.equal(mine.error !== undefined, opts.expectError);
  return { dump, validEnd: mine.validEnd, error: mine.error };
}

async function copyDir(from: string, names: string[]): Promise<string> {
  const to = await Deno.makeTempDir({ prefix: "walrelay_wal_" });
  for (const n of names) await Deno.copyFile(`${from}/${n}`, `${to}/${n}`);
  return to;
}

function flip(bytes: Uint8Array, at: number): void {
  bytes[at] = bytes[at]! ^ 0x10;
}

function name(segno: bigint): string {
  return segmentFileName(1, segno, SEG);
}

/** All bytes of the segments, in order, with their start LSNs. */
async function loadSegments(dir: string): Promise<{ lsn: bigint; bytes: Uint8Array }[]> {
  const out = [];
  for (const path of await segmentFiles(dir)) {
    const base = path.slice(path.lastIndexOf("/") + 1);
    const info = parseWalFileName(base, SEG);
    assert.ok(info?.kind === "segment");
    out.push({ lsn: segmentStart(info.segno, SEG), bytes: await Deno.readFile(path) });
  }
  return out;
}

/** A small deterministic PRNG, so a failing piece size can be reproduced. */
function prng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6D2B79F5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("WalValidator agrees with pg_waldump on real and damaged WAL", async (t) => {
  const temps: string[] = [];
  try {
    const wal = await Deno.makeTempDir({ prefix: "walrelay_wal_" });
    temps.push(wal);
    const names = await withPrimary(async (c) => {
      await c.sql(
        "create table t(a int, b text); " +
          "insert into t select g, repeat('x', g % 300) from generate_series(1, 2000) g",
      );
      await c.pgbench(["-i", "-s", "1", "-q"]);
      await c.pgbench(["-t", "200", "-c", "1"]);
      // A record longer than a segment: its tail fills a whole segment with continuation.
      await c.sql("select pg_logical_emit_message(true, 'big', repeat('y', 2300000))");
      await c.sql("select pg_switch_wal()");
      await c.sql("checkpoint");
      await c.pgbench(["-t", "100", "-c", "1"]);
      await c.stop();
      return await copyWal(c, wal);
    }, { walSegSize: 1, conf: { fsync: "off", wal_keep_size: "64MB" } });
    const first = parseWalFileName(names[0]!, SEG);
    assert.ok(first?.kind === "segment");
    const start = segmentStart(first.segno, SEG);
    const segs = await loadSegments(wal);

    // The record list of the whole directory, the reference for the rest.
    const whole = await agree(wal, start, { expectError: true });
    assert.ok(whole.dump.records.length > 1000);
    assert.ok(whole.dump.records.some((r) => r.rmgr === "XLOG" && r.tot === 24)); // the switch
    const recs = whole.dump.records.map((r) => ({ ...r, at: parseLsn(r.lsn)! }));
    const lastSeg = (whole.validEnd - 1n) / BigInt(SEG);

    await t.step("starts inside a continued record as pg_waldump does", async () => {
      let checked = 0;
      for (const s of segs.slice(1)) {
        const contrecord = (s.bytes[2]! & 1) !== 0;
        const segno = s.lsn / BigInt(SEG);
        if (!contrecord || segno > lastSeg) continue;
        const dir = await copyDir(wal, names.filter((n) => n >= name(segno)));
        temps.push(dir);
        await agree(dir, s.lsn);
        checked++;
      }
      assert.ok(checked >= 2, `only ${checked} segments begin with a continuation`);
    });

    // One segment in the middle, and a record inside it, for the damage below.
    const midSeg = start / BigInt(SEG) + 3n;
    const victims = recs.filter((r) =>
      r.at / BigInt(SEG) === midSeg && r.tot > 100 && Number(r.at % BigInt(BLCKSZ)) < 7000
    );
    const victim = victims[Math.floor(victims.length / 2)]!;
    const upTo = (segno: bigint): string[] => names.filter((n) => n <= name(segno));

    await t.step("a flipped byte fails the CRC of its record", async () => {
      const dir = await copyDir(wal, names);
      temps.push(dir);
      const path = `${dir}/${name(midSeg)}`;
      const bytes = await Deno.readFile(path);
      flip(bytes, Number(victim.at % BigInt(SEG)) + 60);
      await Deno.writeFile(path, bytes);
      const r = await agree(dir, start, { expectError: true });
      assert.equal(r.validEnd, victim.at);
      assert.match(r.error!, /incorrect resource manager data checksum/);
    });

    await t.step("a flipped byte in a record spanning segments", async () => {
      const big = recs.find((r) => r.tot > 1_000_000)!;
      const dir = await copyDir(wal, names);
      temps.push(dir);
      const segno = big.at / BigInt(SEG) + 1n;
      const path = `${dir}/${name(segno)}`;
      const bytes = await Deno.readFile(path);
      flip(bytes, 200_000);
      await Deno.writeFile(path, bytes);
      const r = await agree(dir, start, { expectError: true });
      assert.equal(r.validEnd, big.at);
    });

    await t.step("a stale page in the middle stops at its pageaddr", async () => {
      const dir = await copyDir(wal, names);
      temps.push(dir);
      const path = `${dir}/${name(midSeg)}`;
      const bytes = await Deno.readFile(path);
      const older = segs.find((s) => s.lsn === (midSeg - 1n) * BigInt(SEG))!.bytes;
      const off = 40 * BLCKSZ;
      bytes.set(older.subarray(off, off + BLCKSZ), off);
      await Deno.writeFile(path, bytes);
      const r = await agree(dir, start, { expectError: true });
      assert.match(r.error!, /^unexpected pageaddr/);
      assert.ok(r.validEnd <= midSeg * BigInt(SEG) + BigInt(off));
    });

    await t.step("a recycled segment stops at the segment start", async () => {
      const dir = await copyDir(wal, names);
      temps.push(dir);
      await Deno.copyFile(`${wal}/${name(midSeg - 1n)}`, `${dir}/${name(midSeg)}`);
      const r = await agree(dir, start, { expectError: true });
      assert.match(r.error!, /^unexpected pageaddr .* offset 0$/);
      assert.ok(r.validEnd <= midSeg * BigInt(SEG));
      const crossing = recs.find((x) =>
        x.at < midSeg * BigInt(SEG) && x.at + BigInt(x.tot) > midSeg * BigInt(SEG)
      );
      if (!crossing) assert.equal(r.validEnd, midSeg * BigInt(SEG));
    });

    await t.step("a timeline going back", async () => {
      const dir = await copyDir(wal, names);
      temps.push(dir);
      const path = `${dir}/${name(midSeg)}`;
      const bytes = await Deno.readFile(path);
      new DataView(bytes.buffer).setUint32(7 * BLCKSZ + 4, 0, true);
      await Deno.writeFile(path, bytes);
      const r = await agree(dir, start, { expectError: true });
      assert.match(r.error!, /^out-of-sequence timeline ID 0 \(after 1\)/);
    });

    await t.step("a truncated file ends at its last whole record", async () => {
      for (const cut of [300_001, 40 * BLCKSZ, 40 * BLCKSZ + 20]) {
        const dir = await copyDir(wal, upTo(midSeg));
        temps.push(dir);
        await Deno.truncate(`${dir}/${name(midSeg)}`, cut);
        const end = midSeg * BigInt(SEG) + BigInt(cut);
        const r = await agree(dir, start, { end, expectError: false });
        assert.ok(r.validEnd <= end && r.validEnd > end - 9000n);
      }
    });

    await t.step("a zero tail (.partial) ends at the last record before it", async () => {
      for (const cut of [300_001, 41 * BLCKSZ, victim.at % BigInt(SEG)]) {
        const dir = await copyDir(wal, upTo(midSeg));
        temps.push(dir);
        const path = `${dir}/${name(midSeg)}`;
        const bytes = await Deno.readFile(path);
        bytes.fill(0, Number(cut));
        await Deno.writeFile(path, bytes);
        const dump = await waldump(dir, start);
        await Deno.rename(path, `${path}.partial`);
        const mine = await ours(dir);
        sameRecords(mine.records, dump.records);
        assert.equal(formatLsn(mine.validEnd), formatLsn(dump.end));
        assert.equal(mine.error, dump.error);
        if (cut === victim.at % BigInt(SEG)) {
          assert.equal(
            mine.error,
            `invalid record length at ${formatLsn(victim.at)}: wanted 24, got 0`,
          );
        }
      }
    });

    await t.step("pushing random pieces gives what one push gives", () => {
      for (const seed of [0, 1, 2, 3]) {
        const rand = prng(seed);
        const got: Rec[] = [];
        const v = new WalValidator({
          segmentSize: SEG,
          magic: 0xD110,
          start,
          onRecord: (r) => got.push(toRec(r)),
        });
        for (const s of segs) {
          let off = 0;
          while (off < s.bytes.length && !v.error) {
            // Seed 0 pushes whole segments; the others mix tiny and large pieces.
            const len = seed === 0 ? SEG : 1 + Math.floor(rand() * (rand() < 0.3 ? 20000 : 60));
            const end = Math.min(s.bytes.length, off + len);
            v.push(s.lsn + BigInt(off), s.bytes.subarray(off, end));
            // Re-read from resumeLsn as a caller would, sometimes overlapping what was pushed.
            const overlap = rand() < 0.2 ? Math.floor(rand() * 30) : 0;
            off = Math.max(0, Number(v.resumeLsn - s.lsn) - overlap);
          }
          if (v.error) break;
        }
        sameRecords(got, whole.dump.records, `seed ${seed}`);
        assert.equal(v.validEnd, whole.validEnd);
        assert.equal(v.error?.message, whole.error);
      }
    });

    await t.step("a .partial whose zero tail is filled in later", () => {
      const got: Rec[] = [];
      const v = new WalValidator({
        segmentSize: SEG,
        magic: 0xD110,
        start,
        onRecord: (r) => got.push(toRec(r)),
      });
      for (const s of segs) {
        if (s.lsn > v.resumeLsn) break;
        const inMid = s.lsn === midSeg * BigInt(SEG);
        for (const cut of inMid ? [100_001, 100_001, 420_000, 421_000, SEG] : [SEG]) {
          // The file as it was when this much had been written; the rest is zeros.
          const grown = new Uint8Array(SEG);
          grown.set(s.bytes.subarray(0, cut));
          const from = v.resumeLsn > s.lsn ? Number(v.resumeLsn - s.lsn) : 0;
          if (from >= SEG) break;
          v.push(s.lsn + BigInt(from), grown.subarray(from));
          if (cut < SEG) {
            assert.ok(v.error, `expected the zeros at ${cut} to stop validation`);
            assert.ok(v.validEnd <= s.lsn + BigInt(cut));
            assert.equal(v.resumeLsn, v.validEnd);
          }
        }
      }
      sameRecords(got, whole.dump.records);
      assert.equal(v.validEnd, whole.validEnd);
      assert.equal(v.error?.message, whole.error);
    });
  } finally {
    for (const d of temps) await Deno.remove(d, { recursive: true }).catch(() => {});
  }
});

Deno.test("validateFiles finds the end recorded in the sample WAL's manifest", async () => {
  const root = new URL("../../testdata/", import.meta.url);
  const manifest = JSON.parse(await Deno.readTextFile(new URL("wal.json", root)));
  const files: { name: string; timeline?: number }[] = manifest.files;
  for (
    const tl of manifest.timelines as {
      timeline: number;
      end_lsn: string;
      segment_end_lsn?: string;
    }[]
  ) {
    const paths = files.filter((f) => f.timeline === tl.timeline).map((f) =>
      new URL(`wal/${f.name}`, root).pathname
    );
    const r = await validateFiles(paths);
    const last = paths[paths.length - 1]!;
    // A complete last segment ending in XLOG_SWITCH is valid up to its end.
    const expected = tl.segment_end_lsn !== undefined && !last.endsWith(".partial")
      ? tl.segment_end_lsn
      : tl.end_lsn;
    assert.equal(formatLsn(r.validEnd), expected, `timeline ${tl.timeline}`);
    assert.equal(r.systemId, BigInt(manifest.system_identifier));
  }
});

Deno.test("WalValidator refuses a gap and a start that is not a segment start", () => {
  assert.throws(
    () => new WalValidator({ segmentSize: SEG, magic: 0xD110, start: 0x100008n }),
    RangeError,
  );
  const v = new WalValidator({ segmentSize: SEG, magic: 0xD110, start: 0x100000n });
  assert.throws(() => v.push(0x100010n, new Uint8Array(8)), RangeError);
  v.push(0x0FFFF0n, new Uint8Array(8)); // wholly before resumeLsn: ignored
  assert.equal(v.resumeLsn, 0x100000n);
  assert.equal(v.error, undefined);
});
