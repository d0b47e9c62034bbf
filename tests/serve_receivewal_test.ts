// `walrelay serve` feeding pg_receivewal: the bundled archive across a timeline switch, and a
// freshly generated archive of 16 MB segments.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  assertSegmentsMatch,
  compareDirs,
  copyFiles,
  firstDifference,
  startRelay,
  tempDir,
  TESTDATA,
} from "./_pg.ts";
import {
  formatLsn,
  generateArchive,
  listDir,
  lsn,
  runReceivewal,
  segmentStartLsn,
  testdataInfo,
  touch,
} from "./_relay_util.ts";

Deno.test("pg_receivewal pulls the bundled archive through the relay across the timeline switch", async () => {
  const info = await testdataInfo();
  const [tl1, tl2] = info.timelines;
  assert.ok(tl1 && tl2 && tl2.switchpoint && tl2.segment_end_lsn);

  await using walDir = await tempDir("walrelay-serve-");
  await copyFiles(TESTDATA, walDir.path);
  await using relay = await startRelay({ walDir: walDir.path });
  await using target = await tempDir("walrelay-recv-");
  // An empty .partial makes pg_receivewal start at that segment, on its timeline.
  await touch(join(target.path, `${tl1.first_segment}.partial`));

  // pg_receivewal stops once it is *past* --endpos, and a segment is renamed complete before
  // that check: one byte before the end makes it stop right after the last segment.
  const endpos = formatLsn(lsn(tl2.segment_end_lsn) - 1n);
  const r = await runReceivewal(relay.port, ["-D", target.path, "--no-loop", "--endpos", endpos]);
  assert.equal(r.code, 0, `pg_receivewal failed:\n${r.stderr}\n--- relay ---\n${relay.stderr()}`);
  // It really followed the switch: end of timeline 1, then streaming on timeline 2.
  assert.match(r.stderr, /switched to timeline 2 at 0\/997C58/);

  // Every complete segment and the history file, byte for byte.
  const wanted = info.files.map((f) => f.name).filter((n) => !n.endsWith(".partial"));
  // Against the pristine originals, not the copy the relay was given.
  const c = await compareDirs(target.path, TESTDATA, (n) => wanted.includes(n));
  assert.deepEqual(c.differ, []);
  assert.deepEqual(c.onlyInB, [], "files the client never wrote");
  assert.deepEqual(c.same, [...wanted].sort());
  assert.deepEqual(
    (await listDir(target.path)).filter((n) => !wanted.includes(n)),
    ["000000010000000000000009.partial"],
  );

  // The timeline-1 .partial: identical up to the switch point, nothing after it.
  const segSize = BigInt(info.segment_size);
  const cut = Number(lsn(tl2.switchpoint) % segSize);
  const got = await Deno.readFile(join(target.path, "000000010000000000000009.partial"));
  const src = await Deno.readFile(join(TESTDATA, "000000010000000000000009.partial"));
  assert.equal(got.length, info.segment_size);
  assert.equal(firstDifference(got.subarray(0, cut), src.subarray(0, cut)), -1);
  assert.ok(got.subarray(cut).every((b) => b === 0), "bytes past the switch point");
});

Deno.test("pg_receivewal pulls a fresh 256 MB archive of 16 MB segments through the relay", async () => {
  const t0 = performance.now();
  const lap = (what: string, since: number) =>
    console.log(`  ${what}: ${((performance.now() - since) / 1000).toFixed(1)} s`);

  let t = performance.now();
  // 260 MB of real WAL: 1 MB non-transactional logical messages, archived, then copied.
  const { dir: walDir, names } = await generateArchive({ walSegSize: 16, megabytes: 260 });
  await using _walDir = walDir;
  lap(`generate, archive and copy ${names.length} segments`, t);
  const segSize = 16n << 20n;
  const first = names[0]!;
  const endpos = segmentStartLsn(names.at(-1)!, 16 << 20) + segSize;
  assert.ok(names.length >= 16, `only ${names.length} segments`);

  await using relay = await startRelay({ walDir: walDir.path });
  await using target = await tempDir("walrelay-recv-16mb-");
  await touch(join(target.path, `${first}.partial`));
  t = performance.now();
  const r = await runReceivewal(
    relay.port,
    ["-D", target.path, "--no-loop", "--no-sync", "--endpos", formatLsn(endpos - 1n)],
    180_000,
  );
  const secs = (performance.now() - t) / 1000;
  assert.equal(r.code, 0, `pg_receivewal failed:\n${r.stderr}\n--- relay ---\n${relay.stderr()}`);
  console.log(
    `  pg_receivewal streamed ${names.length} × 16 MB in ${secs.toFixed(1)} s ` +
      `(${(names.length * 16 / secs).toFixed(0)} MB/s)`,
  );

  const same = await assertSegmentsMatch(target.path, walDir.path);
  assert.deepEqual(same, names);
  assert.deepEqual(await listDir(target.path), names, "nothing but complete segments");
  lap("total", t0);
});
