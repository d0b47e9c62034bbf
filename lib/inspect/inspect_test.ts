import assert from "node:assert/strict";
import { type InspectReport, inspectWal, type TimelineReport } from "./inspect.ts";
import { formatLsn, parseLsn } from "../wal/lsn.ts";
import { parseWalFileName } from "../wal/segment.ts";
import { copyTestdata, copyWal, runPg, TESTDATA, withPrimary } from "../../tests/_pg.ts";

interface Manifest {
  server_version: string;
  system_identifier: string;
  segment_size: number;
  block_size: number;
  timelines: {
    timeline: number;
    parent?: number;
    switchpoint?: string;
    begin_lsn: string;
    end_lsn: string;
    first_segment: string;
    last_segment?: string;
    partial_segment?: string;
    last_record_lsn: string;
    segment_end_lsn?: string;
  }[];
}

const manifest: Manifest = JSON.parse(
  await Deno.readTextFile(new URL("../../testdata/wal.json", import.meta.url)),
);

/** One row of `pg_waldump --stats=rmgr`: N and the combined size (xl_tot_len). */
interface StatsRow {
  records: number;
  bytes: number;
}

/** What pg_waldump reports about a range. */
interface WaldumpStats {
  first: string;
  end: string;
  rows: Map<string, StatsRow>;
}

/**
 * `pg_waldump --stats=rmgr` over a timeline from its first segment up to `end`. pg_waldump knows
 * no `.partial` names, so the files are copied with `.partial` dropped where no complete file
 * exists.
 */
async function waldumpStats(
  dir: string,
  tli: number,
  start: bigint,
  end: bigint,
): Promise<WaldumpStats> {
  const copy = await Deno.makeTempDir({ prefix: "walrelay_inspect_dump_" });
  try {
    for await (const e of Deno.readDir(dir)) {
      const target = e.name.replace(/\.partial$/, "");
      try {
        await Deno.lstat(`${dir}/${target}`);
        if (target !== e.name) continue;
      } catch {
        // no complete file of that name: use the partial one
      }
      await Deno.copyFile(`${dir}/${e.name}`, `${copy}/${target}`);
    }
    const out = await runPg("pg_waldump", [
      "-p",
      copy,
      "-t",
      String(tli),
      "--start",
      formatLsn(start),
      "--end",
      formatLsn(end),
      "--stats=rmgr",
    ]);
    const between = /WAL statistics between (\S+) and (\S+):/.exec(out.stdout);
    assert.ok(between, out.stdout + out.stderr);
    const rows = new Map<string, StatsRow>();
    const row = /^(\S+)\s+(\d+) \(\s*[\d.]+\)\s+\d+ \(\s*[\d.]+\)\s+\d+ \(\s*[\d.]+\)\s+(\d+) \(/;
    for (const line of out.stdout.split("\n")) {
      const m = row.exec(line);
      if (m && Number(m[2]) > 0) rows.set(m[1]!, { records: Number(m[2]), bytes: Number(m[3]) });
    }
    return { first: between[1]!, end: between[2]!, rows };
  } finally {
    await Deno.remove(copy, { recursive: true });
  }
}

/** Checks a timeline's counts, first record and valid end against pg_waldump's statistics. */
async function agreesWithWaldump(dir: string, t: TimelineReport): Promise<void> {
  const dump = await waldumpStats(dir, t.timeline, t.startLsn, t.validEnd);
  const ours = new Map(t.rmgrs.map((r) => [r.name, { records: r.records, bytes: r.bytes }]));
  assert.deepEqual(ours, dump.rows, `timeline ${t.timeline}`);
  assert.equal(formatLsn(t.firstRecord!), dump.first);
  assert.equal(formatLsn(t.validEnd), dump.end);
  let records = 0;
  let bytes = 0;
  for (const r of dump.rows.values()) {
    records += r.records;
    bytes += r.bytes;
  }
  assert.equal(t.records, records);
  assert.equal(t.recordBytes, bytes);
}

function timeline(report: InspectReport, tli: number): TimelineReport {
  const t = report.timelines.find((x) => x.timeline === tli);
  assert.ok(t, `timeline ${tli} in the report`);
  return t;
}

Deno.test("inspectWal agrees with the sample WAL's manifest and pg_waldump --stats", async () => {
  const report = await inspectWal(TESTDATA);
  assert.equal(report.kind, "directory");
  assert.equal(report.systemId, BigInt(manifest.system_identifier));
  assert.equal(report.segmentSize, manifest.segment_size);
  assert.equal(report.blockSize, manifest.block_size);
  assert.equal(report.serverMajor, Number(manifest.server_version.split(".")[0]));
  assert.deepEqual(
    report.timelines.map((t) => t.timeline),
    manifest.timelines.map((t) => t.timeline),
  );
  assert.deepEqual(report.issues, []);
  assert.deepEqual(report.warnings, []);
  assert.ok(report.consistent);
  assert.equal(report.bytesValidated, 7 * manifest.segment_size);

  const [m1, m2] = manifest.timelines;
  const t1 = timeline(report, 1);
  assert.equal(t1.firstSegment, m1!.first_segment);
  assert.equal(t1.lastSegment, m1!.partial_segment);
  assert.equal(formatLsn(t1.startLsn), m1!.begin_lsn);
  assert.equal(formatLsn(t1.validEnd), m1!.end_lsn);
  assert.equal(formatLsn(t1.lastRecord!), m1!.last_record_lsn);
  // The .partial ends in zeros after the switch point: xlogreader's normal end of WAL.
  assert.equal(t1.stop.kind, "invalid");
  assert.equal(t1.stop.message, `invalid record length at ${m1!.end_lsn}: wanted 24, got 0`);
  assert.deepEqual(t1.systemIds, [BigInt(manifest.system_identifier)]);
  assert.equal(t1.parent, undefined);
  assert.deepEqual(t1.forkedAt, { timeline: 2, lsn: parseLsn(m2!.switchpoint!) });

  const t2 = timeline(report, 2);
  assert.equal(t2.parent, m2!.parent);
  assert.equal(formatLsn(t2.switchpoint!), m2!.switchpoint);
  assert.equal(t2.firstSegment, m2!.first_segment);
  assert.equal(t2.lastSegment, m2!.last_segment);
  assert.equal(t2.gaps.length, 0);
  // The last segment ends in XLOG_SWITCH: valid to its end.
  assert.equal(formatLsn(t2.validEnd), m2!.segment_end_lsn);
  assert.equal(formatLsn(t2.lastRecord!), m2!.last_record_lsn);
  assert.deepEqual(t2.stop, { kind: "end", lsn: t2.validEnd, message: "" });

  for (const t of report.timelines) await agreesWithWaldump(TESTDATA, t);
});

Deno.test("inspectWal on one segment file reports that segment", async () => {
  const name = "000000010000000000000007";
  const report = await inspectWal(`${TESTDATA}/${name}`);
  assert.equal(report.kind, "file");
  assert.ok(report.consistent);
  assert.equal(report.timelines.length, 1);
  const t = report.timelines[0]!;
  assert.equal(t.firstSegment, name);
  assert.equal(t.segments, 1);
  assert.equal(formatLsn(t.startLsn), "0/700000");
  // Its last record continues into the next segment, which is not given.
  assert.equal(t.stop.kind, "end");
  assert.match(t.stop.message, new RegExp(`^the record at ${formatLsn(t.validEnd)} continues`));
  await agreesWithWaldump(TESTDATA, t);

  // Under another name, the page header places it.
  const dir = await Deno.makeTempDir({ prefix: "walrelay_inspect_" });
  try {
    await Deno.copyFile(`${TESTDATA}/${name}`, `${dir}/segment.bin`);
    const renamed = await inspectWal(`${dir}/segment.bin`);
    assert.equal(formatLsn(renamed.timelines[0]!.startLsn), "0/700000");
    assert.equal(renamed.timelines[0]!.records, t.records);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspectWal finds a missing middle segment", async () => {
  const dir = await copyTestdata();
  try {
    await Deno.remove(`${dir}/000000010000000000000007`);
    const report = await inspectWal(dir);
    assert.ok(!report.consistent);
    assert.deepEqual(report.issues.map((i) => i.kind), ["gap"]);
    assert.match(report.issues[0]!.message, /segment 000000010000000000000007 is missing/);
    const t1 = timeline(report, 1);
    assert.deepEqual(t1.gaps, [{
      first: "000000010000000000000007",
      last: "000000010000000000000007",
      count: 1,
      startLsn: 0x700000n,
    }]);
    assert.equal(t1.stop.kind, "missing");
    assert.match(t1.stop.message, /could not find file "000000010000000000000007"/);
    await agreesWithWaldump(dir, t1);
    assert.ok(timeline(report, 2).gaps.length === 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspectWal finds invalid WAL before the end, as xlogreader words it", async () => {
  const dir = await copyTestdata();
  try {
    const path = `${dir}/000000010000000000000007`;
    const bytes = await Deno.readFile(path);
    const at = manifest.segment_size / 2 + 1000;
    bytes[at] = bytes[at]! ^ 0x10;
    await Deno.writeFile(path, bytes);
    const report = await inspectWal(dir);
    assert.ok(!report.consistent);
    assert.deepEqual(report.issues.map((i) => i.kind), ["invalid-before-end"]);
    const t1 = timeline(report, 1);
    assert.equal(t1.stop.kind, "invalid");
    // pg_waldump stops at the same record with the same words.
    const out = await runPg("pg_waldump", ["-p", dir, "--start", "0/700000"]);
    const err = /error in WAL record at [^:]+: (.*)/.exec(out.stderr);
    assert.equal(t1.stop.message, err?.[1]);
    assert.match(t1.stop.message, /^incorrect resource manager data checksum in record at /);
    const issue = report.issues[0]!;
    assert.equal(issue.timeline, 1);
    assert.ok(issue.message.includes(formatLsn(t1.stop.lsn)), issue.message);
    assert.ok(issue.message.includes(t1.stop.message), issue.message);
    assert.ok(issue.message.includes("000000010000000000000008"), issue.message);
    await agreesWithWaldump(dir, t1);
    assert.equal(formatLsn(timeline(report, 2).validEnd), "0/C00000");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspectWal takes recycled segments past the end for what they are", async () => {
  const dir = await copyTestdata();
  try {
    // A live pg_wal keeps renamed old segments ahead of the insert position.
    await Deno.copyFile(`${dir}/00000002000000000000000A`, `${dir}/00000002000000000000000C`);
    await Deno.copyFile(`${dir}/00000002000000000000000A`, `${dir}/00000002000000000000000D`);
    const report = await inspectWal(dir);
    assert.ok(report.consistent, JSON.stringify(report.issues));
    const t2 = timeline(report, 2);
    assert.equal(formatLsn(t2.validEnd), "0/C00000");
    assert.equal(
      t2.stop.message,
      "unexpected pageaddr 0/A00000 in log segment 00000002000000000000000C, offset 0",
    );
    assert.equal(report.warnings.length, 1);
    assert.match(report.warnings[0]!, /00000002000000000000000D/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspectWal finds a segment of another cluster", async () => {
  const dir = await copyTestdata();
  try {
    const foreign = await withPrimary(async (c) => {
      await c.stop();
      const wal = await Deno.makeTempDir({ prefix: "walrelay_inspect_foreign_" });
      const names = await copyWal(c, wal);
      assert.ok(parseWalFileName(names[0]!, manifest.segment_size)?.kind === "segment");
      const bytes = await Deno.readFile(`${wal}/${names[0]}`);
      await Deno.remove(wal, { recursive: true });
      return bytes;
    }, { walSegSize: manifest.segment_size >> 20 });
    const otherId = new DataView(foreign.buffer).getBigUint64(24, true);
    assert.notEqual(otherId, BigInt(manifest.system_identifier));
    await Deno.writeFile(`${dir}/000000010000000000000007`, foreign);

    const report = await inspectWal(dir);
    assert.ok(!report.consistent);
    assert.equal(report.systemId, BigInt(manifest.system_identifier));
    const mixed = report.issues.find((i) => i.kind === "mixed-system-id");
    assert.ok(mixed, JSON.stringify(report.issues));
    assert.ok(mixed.message.includes(`${otherId} (000000010000000000000007)`), mixed.message);
    const t1 = timeline(report, 1);
    assert.deepEqual(t1.systemIds.sort(), [otherId, BigInt(manifest.system_identifier)].sort());
    assert.equal(t1.stop.lsn, 0x700000n);
    assert.equal(
      t1.stop.message,
      "WAL file is from different database system: WAL file database system identifier is " +
        `${otherId}, pg_control database system identifier is ${manifest.system_identifier}`,
    );
    assert.ok(report.issues.some((i) => i.kind === "invalid-before-end"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspectWal reports progress up to the total and reads in chunks", async () => {
  const seen: [number, number][] = [];
  const report = await inspectWal(TESTDATA, {
    chunkSize: 64 * 1024,
    onProgress: (done, total) => seen.push([done, total]),
  });
  const total = 7 * manifest.segment_size;
  assert.ok(seen.length > 7 * 16 / 2, `${seen.length} progress calls`);
  assert.ok(seen.every(([, t]) => t === total));
  assert.ok(seen.every(([d], i) => i === 0 || d >= seen[i - 1]![0]));
  assert.equal(seen.at(-1)![0], total);
  // Chunk size changes nothing in the result.
  const whole = await inspectWal(TESTDATA);
  assert.deepEqual(
    report.timelines.map((t) => [t.validEnd, t.records, t.recordBytes]),
    whole.timelines.map((t) => [t.validEnd, t.records, t.recordBytes]),
  );
});

/** Rewrites the magic of every WAL page of one segment file, as another major's WAL. */
async function setMagic(path: string, magic: number): Promise<void> {
  const bytes = await Deno.readFile(path);
  for (let at = 0; at + 8192 <= bytes.length; at += 8192) {
    if (bytes[at + 1] === 0xD1) new DataView(bytes.buffer).setUint16(at, magic, true);
  }
  await Deno.writeFile(path, bytes);
}

Deno.test("inspectWal names WAL of a major walrelay does not support, file by file", async () => {
  const dir = await copyTestdata();
  try {
    for await (const e of Deno.readDir(dir)) {
      if (/^[0-9A-F]{24}/.test(e.name)) await setMagic(`${dir}/${e.name}`, 0xD11A);
    }
    const report = await inspectWal(dir);
    assert.ok(!report.consistent);
    assert.equal(report.serverMajor, undefined);
    assert.deepEqual(report.issues.map((i) => i.kind), ["unsupported-major"]);
    assert.equal(
      report.issues[0]!.message,
      "WAL page magic 0xD11A is not from a PostgreSQL major walrelay supports (15–18): files " +
        "000000010000000000000006, 000000010000000000000007, 000000010000000000000008 and 4 more",
    );
    const one = await inspectWal(`${dir}/000000010000000000000006`);
    assert.equal(
      one.issues[0]!.message,
      "WAL page magic 0xD11A is not from a PostgreSQL major walrelay supports (15–18): file " +
        "000000010000000000000006",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspectWal takes 16's page magic for PostgreSQL 16 (synthetic pages)", async () => {
  const dir = await copyTestdata();
  try {
    for await (const e of Deno.readDir(dir)) {
      if (/^[0-9A-F]{24}/.test(e.name)) await setMagic(`${dir}/${e.name}`, 0xD113);
    }
    const report = await inspectWal(dir);
    assert.ok(report.consistent, report.issues.map((i) => i.message).join("\n"));
    assert.equal(report.serverMajor, 16);
    assert.deepEqual(report.timelines.map((t) => t.serverMajor), [16, 16]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("inspectWal on a data directory says where its WAL is", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(`${dir}/pg_wal`);
    await Deno.writeTextFile(`${dir}/PG_VERSION`, "15\n");
    const r = await inspectWal(dir);
    assert.equal(r.timelines.length, 0);
    assert.ok(
      r.warnings.includes(
        `no WAL files here: it looks like a PostgreSQL data directory, whose WAL is in "${dir}/pg_wal"`,
      ),
      r.warnings.join("\n"),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
