// A damaged archive is never served: a byte flipped 5 MB into an older, complete 16 MB segment of
// real PostgreSQL 15 WAL. pg_receivewal through the relay gets the WAL up to the last valid record
// and then XX001 naming the file and the LSN; a client of an undamaged range is unaffected;
// /metrics counts the damaged file once per file version.

import assert from "node:assert/strict";
import { join } from "node:path";
import { compareDirs, firstDifference, freePort, startRelay, tempDir, waitFor } from "./_pg.ts";
import {
  formatLsn,
  generateArchive,
  runReceivewal,
  segmentStartLsn,
  touch,
} from "./_relay_util.ts";
import { validateFiles } from "../lib/wal/reader.ts";

const SEG = 16 << 20;
const FLIP_AT = 5 << 20;

Deno.test("a damaged segment is served up to its last valid record, then XX001; other clients are unaffected", async () => {
  const { dir: walDir, names } = await generateArchive({ walSegSize: 16, megabytes: 72 });
  await using _walDir = walDir;
  assert.ok(names.length >= 5, `only ${names.length} segments`);
  const [first, second, damaged] = names as [string, string, string];
  const damagedPath = join(walDir.path, damaged);
  const original = await Deno.readFile(damagedPath);
  const bad = original.slice();
  bad[FLIP_AT]! ^= 0x01;
  await Deno.writeFile(damagedPath, bad);

  // Where PostgreSQL's reader checks stop on the damaged chain, found independently of the relay.
  const chain = await validateFiles([first, second, damaged].map((n) => join(walDir.path, n)));
  const damagedStart = segmentStartLsn(damaged, SEG);
  assert.ok(chain.error, "the flipped byte fails a check");
  assert.ok(chain.validEnd > damagedStart && chain.validEnd < damagedStart + BigInt(FLIP_AT));
  const served = Number(chain.validEnd - damagedStart);

  const httpPort = await freePort();
  await using relay = await startRelay({
    walDir: walDir.path,
    args: ["--http", `127.0.0.1:${httpPort}`],
  });
  const metrics = async (): Promise<string> =>
    await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const endpos = formatLsn(segmentStartLsn(names.at(-1)!, SEG) + BigInt(SEG) - 1n);
  const message = `WAL file "${damaged}" is damaged: ${chain.error.message}`;

  /** pg_receivewal from the first segment to the end: it must stop at the damage. */
  const damagedClient = async () => {
    const target = await tempDir("walrelay-damaged-recv-");
    await touch(join(target.path, `${first}.partial`));
    const r = await runReceivewal(relay.port, ["-D", target.path, "--no-loop", "--endpos", endpos]);
    return { target, r };
  };
  /** pg_receivewal of the two segments before the damaged one. */
  const cleanClient = async () => {
    const target = await tempDir("walrelay-clean-recv-");
    await touch(join(target.path, `${first}.partial`));
    const before = formatLsn(damagedStart - 1n);
    const r = await runReceivewal(relay.port, ["-D", target.path, "--no-loop", "--endpos", before]);
    return { target, r };
  };

  const [hurt, clean] = await Promise.all([damagedClient(), cleanClient()]);
  await using _hurt = hurt.target;
  await using _clean = clean.target;

  // The undamaged range arrives whole, byte for byte.
  assert.equal(clean.r.code, 0, `clean client failed:\n${clean.r.stderr}\n${relay.stderr()}`);
  const c = await compareDirs(clean.target.path, walDir.path, (n) => n === first || n === second);
  assert.deepEqual(c.same, [first, second]);

  // The damaged range: the error names the file and the LSN in xlogreader's words.
  assert.notEqual(hurt.r.code, 0, `pg_receivewal got everything:\n${hurt.r.stderr}`);
  assert.ok(hurt.r.stderr.includes(message), hurt.r.stderr);
  // Logged by the sender's thread, which may write it a moment after the client has the error.
  await waitFor(() => relay.stderr().includes(message) || undefined, {
    timeoutMs: 10_000,
    message: `the relay did not log the damage:\n${relay.stderr()}`,
  });
  // The segments before it, whole; the damaged one never complete, only a .partial holding the
  // valid WAL before the damage and nothing after it.
  const h = await compareDirs(hurt.target.path, walDir.path, (n) => n === first || n === second);
  assert.deepEqual(h.same, [first, second]);
  const files = [];
  for await (const e of Deno.readDir(hurt.target.path)) files.push(e.name);
  assert.ok(!files.includes(damaged), `${damaged} arrived complete`);
  assert.ok(files.includes(`${damaged}.partial`), files.join(", "));
  const got = await Deno.readFile(join(hurt.target.path, `${damaged}.partial`));
  assert.equal(firstDifference(got.subarray(0, served), original.subarray(0, served)), -1);
  assert.ok(got.subarray(served).every((b) => b === 0), "bytes past the last valid record");

  // Counted in /metrics, once for the file, and as an error sent to each client that reached
  // it. The clean client may reach it too: the sender streams on past the end that client wants
  // until its CopyDone arrives, as a walsender does.
  let m = await metrics();
  assert.match(m, /^walrelay_wal_files_damaged_total 1$/m);
  const xx001 = (text: string): number =>
    Number(/^walrelay_errors_total\{sqlstate="XX001"\} (\d+)$/m.exec(text)?.[1] ?? 0);
  const sentBefore = xx001(m);
  assert.ok(sentBefore === 1 || sentBefore === 2, m);

  // A second client: the remembered result, no second validation of the same file.
  const again = await damagedClient();
  await using _again = again.target;
  assert.ok(again.r.stderr.includes(message), again.r.stderr);
  m = await metrics();
  assert.match(m, /^walrelay_wal_files_damaged_total 1$/m);
  assert.equal(xx001(m), sentBefore + 1);

  // A new modification time is a new version of the file: validated again.
  const later = new Date(Date.now() + 60_000);
  await Deno.utime(damagedPath, later, later);
  const touched = await damagedClient();
  await using _touched = touched.target;
  assert.ok(touched.r.stderr.includes(message), touched.r.stderr);
  m = await metrics();
  assert.match(m, /^walrelay_wal_files_damaged_total 2$/m);
});
