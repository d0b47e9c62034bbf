// Relay mode with a client that stops reading: it must not hold back anyone else, and what the
// relay holds for it must not grow with the WAL that flows past. The stalled client reads again
// later, from disk, and gets the primary's WAL byte for byte.

import assert from "node:assert/strict";
import { join } from "node:path";
import { assertSegmentsMatch, startPrimary, tempDir } from "./_pg.ts";
import { RawReplClient, spawnReceivewal, waitForFiles } from "./_relay_util.ts";
import { startRelayMode } from "./_relay_mode_util.ts";
import { formatLsn, parseLsn } from "../lib/wal/lsn.ts";
import { BodyReader } from "../lib/pgwire/body_reader.ts";
import { parseWalFileName, segmentFileName } from "../lib/wal/segment.ts";

const SEG = 1 << 20;
const MB = 1024 * 1024;

function rss(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${pid}/status`))![1]) * 1024;
}

Deno.test("relay mode: a stalled client slows no one, costs bounded memory, and catches up from disk", async () => {
  await using pg = await startPrimary({
    walSegSize: 1,
    conf: { wal_keep_size: "1GB", max_wal_size: "2GB", checkpoint_timeout: "1h" },
  });
  await using dir = await tempDir("walrelay-slow-");
  // A client that reads nothing sends no replies either: wal_sender_timeout would drop it.
  await using relay = await startRelayMode({
    walDir: dir.path,
    upstream: pg.conninfo(),
    args: ["--sender-timeout", "0"],
  });

  // The stalled client: starts streaming at the current segment, then reads nothing.
  using stalled = await RawReplClient.connect(relay.port);
  const ident = await stalled.query("IDENTIFY_SYSTEM");
  const startLsn = parseLsn(ident.rows[0]![2]!)! / BigInt(SEG) * BigInt(SEG);
  const started = await stalled.query(`START_REPLICATION PHYSICAL ${formatLsn(startLsn)}`);
  assert.ok(started.copyBoth, JSON.stringify(started.error));

  await using out = await tempDir("walrelay-slow-rw-");
  await using rw = await spawnReceivewal(relay.port, ["-D", out.path]);

  // WAL far beyond the relay's 64 MB in-memory tail, in two halves: the relay's memory after
  // the first half is the baseline for the second.
  const emit = (mb: number) =>
    pg.sql(
      `SELECT count(pg_logical_emit_message(false, 'slow', repeat('x', ${MB - 200}))) ` +
        `FROM generate_series(1, ${mb})`,
    );
  await emit(100);
  const mid = await pg.switchWal();
  await waitForFiles(out.path, [mid], { proc: rw, sizes: SEG, timeoutMs: 120_000 });
  const rssMid = rss(relay.pid);
  await emit(150);
  const last = await pg.switchWal();
  // The reading client keeps up while the other one stalls.
  await waitForFiles(out.path, [last], { proc: rw, sizes: SEG, timeoutMs: 120_000 });
  const rssEnd = rss(relay.pid);
  assert.ok(
    rssEnd - rssMid < 48 * MB,
    `relay RSS grew by ${(rssEnd - rssMid) / MB} MB while 150 MB went past a stalled client`,
  );
  await assertSegmentsMatch(out.path, pg.walDir);

  // The stalled client reads again: everything up to the end of `last`, from the relay's files.
  const parsed = parseWalFileName(last, SEG);
  assert.ok(parsed?.kind === "segment");
  const lastSegno = parsed.segno;
  const end = (lastSegno + 1n) * BigInt(SEG);
  const segments = new Map<bigint, Uint8Array>();
  let received = startLsn;
  while (received < end) {
    const m = await stalled.readMessage();
    if (m.type === "E") assert.fail(`error while catching up: ${new TextDecoder().decode(m.body)}`);
    if (m.type !== "d" || m.body[0] !== 0x77) continue;
    const r = new BodyReader(m.body.subarray(1));
    const dataStart = r.uint64();
    const payload = m.body.subarray(25);
    assert.equal(dataStart, received, "the stream is contiguous");
    let off = 0;
    while (off < payload.length) {
      const lsn = dataStart + BigInt(off);
      const segno = lsn / BigInt(SEG);
      const inSeg = Number(lsn % BigInt(SEG));
      const n = Math.min(payload.length - off, SEG - inSeg);
      let buf = segments.get(segno);
      if (!buf) segments.set(segno, buf = new Uint8Array(SEG));
      buf.set(payload.subarray(off, off + n), inSeg);
      off += n;
    }
    received = dataStart + BigInt(payload.length);
  }
  // Every complete segment it got is the primary's own.
  let compared = 0;
  for (const [segno, bytes] of segments) {
    if (segno > lastSegno) continue;
    const name = segmentFileName(1, segno, SEG);
    const want = await Deno.readFile(join(pg.walDir, name));
    assert.ok(bytes.every((b, i) => b === want[i]), `${name} differs from the primary's`);
    compared++;
  }
  assert.ok(compared >= 250, `compared only ${compared} segments`);
});
