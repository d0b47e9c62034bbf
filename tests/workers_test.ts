// Sender workers (`--workers N`): connections spread over the threads, one global sender limit,
// one registry behind /status, slots held across threads, and the wake-up on new WAL in relay
// mode reaching every thread.

import assert from "node:assert/strict";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import { silentLogger } from "../lib/log.ts";
import { WalRelay } from "../lib/server.ts";
import { parseLsn } from "../lib/wal/lsn.ts";
import {
  copyFiles,
  freePort,
  type PgCluster,
  startPrimary,
  startRelay,
  tempDir,
  TESTDATA,
  waitFor,
} from "./_pg.ts";
import { formatLsn, generateArchive, RawReplClient, segmentStartLsn } from "./_relay_util.ts";

interface SenderRow {
  pid: number;
  client_port: number;
  worker: number;
  state: string;
}

/**
 * Opens `n` connections, held open, that together land on more than one worker: the kernel
 * spreads them by a hash, so one that joined a crowded worker is closed and another tried.
 */
async function spreadClients(
  port: number,
  n: number,
  senders: () => Promise<SenderRow[]>,
): Promise<{ client: RawReplClient; row: SenderRow }[]> {
  const held: { client: RawReplClient; row: SenderRow }[] = [];
  for (let attempt = 0;; attempt++) {
    while (held.length < n) {
      const client = await RawReplClient.connect(port);
      const row = await waitFor(
        async () => (await senders()).find((s) => s.client_port === client.localPort),
        { message: "a connected client never showed in the registry" },
      );
      held.push({ client, row });
    }
    if (new Set(held.map((h) => h.row.worker)).size > 1) return held;
    assert.ok(attempt < 50, "50 tries and every connection landed on one worker");
    const gone = held.shift()!;
    gone.client.close();
    // Its sender is released before another may take the place under the limit.
    await waitFor(async () => !(await senders()).some((s) => s.pid === gone.row.pid) || undefined);
  }
}

/**
 * `walrelay serve --workers 2 --max-senders 4` on `walDir`, run as `deno run -A cli.ts` (reusePort
 * needs no flag from the user), and its senders as `/status` lists them.
 */
async function twoThreadCli(walDir: string) {
  const httpPort = await freePort();
  const relay = await startRelay({
    walDir,
    args: ["--workers", "2", "--max-senders", "4", "--http", `127.0.0.1:${httpPort}`],
  });
  const senders = async (): Promise<SenderRow[]> =>
    (await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json()).senders;
  return { relay, senders, httpPort };
}

Deno.test("workers: connections spread over the threads under one sender limit, and a slot held on one thread is refused on another", async () => {
  await using walDir = await tempDir("walrelay-workers-");
  await copyFiles(TESTDATA, walDir.path);
  const { relay: started, senders } = await twoThreadCli(walDir.path);
  await using relay = started;
  const held = await spreadClients(relay.port, 4, senders);
  try {
    const rows = await senders();
    assert.equal(rows.length, 4, JSON.stringify(rows));
    assert.deepEqual(new Set(rows.map((r) => r.worker)), new Set([1, 2]));
    assert.equal(new Set(rows.map((r) => r.pid)).size, 4, "pids are unique over the threads");

    // The limit is global: four senders over two threads leave no place for a fifth.
    await assert.rejects(
      RawReplClient.connect(relay.port),
      (e: Error) => {
        assert.match(e.message, /"C":"53300"/);
        assert.match(
          e.message,
          /number of requested standby connections exceeds max_wal_senders \(currently 4\)/,
        );
        return true;
      },
    );

    // A slot streamed from on one thread is refused to a session of the other.
    const a = held[0]!;
    const b = held.find((h) => h.row.worker !== a.row.worker)!;
    const created = await a.client.query("CREATE_REPLICATION_SLOT x PHYSICAL RESERVE_WAL");
    assert.equal(created.error, undefined, JSON.stringify(created.error));
    const ident = await a.client.query("IDENTIFY_SYSTEM");
    const [, tli, xlogpos] = ident.rows[0]!;
    const start = `START_REPLICATION SLOT x PHYSICAL ${xlogpos} TIMELINE ${tli}`;
    assert.equal((await a.client.query(start)).copyBoth, true);
    const refused = await b.client.query(start);
    assert.equal(refused.copyBoth, false);
    assert.equal(refused.error?.C, "55006");
    assert.equal(refused.error?.M, `replication slot "x" is active for PID ${a.row.pid}`);
    const drop = await b.client.query("DROP_REPLICATION_SLOT x");
    assert.equal(drop.error?.C, "55006", JSON.stringify(drop));

    // Once its holder is gone, the other thread's session takes it.
    a.client.close();
    const taken = await waitFor(async () => (await b.client.query(start)).copyBoth || undefined, {
      message: "the slot was never released to the other thread",
    });
    assert.equal(taken, true);
    await waitFor(
      async () =>
        (await senders()).find((s) => s.pid === b.row.pid && s.state !== "startup") !== undefined ||
        undefined,
      { message: "the session never showed as streaming from the slot" },
    );
  } finally {
    for (const h of held) h.client.close();
  }
  // Every place of the limit comes back.
  await waitFor(async () => (await senders()).length === 0 || undefined, {
    message: "senders left in the registry after their clients closed",
  });
});

Deno.test("workers: --workers 1 serves every connection on the main thread, with the same limit and slots", async () => {
  await using walDir = await tempDir("walrelay-workers1-");
  await copyFiles(TESTDATA, walDir.path);
  const httpPort = await freePort();
  await using relay = await startRelay({
    walDir: walDir.path,
    args: ["--workers", "1", "--max-senders", "2", "--http", `127.0.0.1:${httpPort}`],
  });
  assert.doesNotMatch(relay.stderr(), /workers=/, "no sender threads are started");
  const senders = async (): Promise<SenderRow[]> =>
    (await (await fetch(`http://127.0.0.1:${httpPort}/status`)).json()).senders;
  using a = await RawReplClient.connect(relay.port);
  using b = await RawReplClient.connect(relay.port);
  // One thread: the registry is the sessions' own, with no report to wait for.
  const rows = await senders();
  assert.deepEqual(rows.map((r) => r.worker), [0, 0]);
  await assert.rejects(
    RawReplClient.connect(relay.port),
    /number of requested standby connections exceeds max_wal_senders \(currently 2\)/,
  );
  assert.equal((await a.query("CREATE_REPLICATION_SLOT x PHYSICAL RESERVE_WAL")).error, undefined);
  const [, tli, xlogpos] = (await a.query("IDENTIFY_SYSTEM")).rows[0]!;
  const start = `START_REPLICATION SLOT x PHYSICAL ${xlogpos} TIMELINE ${tli}`;
  assert.equal((await a.query(start)).copyBoth, true);
  const pidA = rows.find((r) => r.client_port === a.localPort)!.pid;
  const refused = await b.query(start);
  assert.equal(refused.error?.C, "55006");
  assert.equal(refused.error?.M, `replication slot "x" is active for PID ${pidA}`);
});

/**
 * Streams from `start` up to `end` and checks every byte against `plain`, the archive's segments
 * by name; gives up after 30 s.
 */
async function receiveAndCompare(
  client: RawReplClient,
  start: bigint,
  end: bigint,
  plain: Map<string, Uint8Array>,
  segSize: number,
): Promise<void> {
  const r = await client.query(`START_REPLICATION PHYSICAL ${formatLsn(start)} TIMELINE 1`);
  assert.equal(r.copyBoth, true, JSON.stringify(r.error));
  // A few seconds' work: a sender starved for bytes fails instead of crawling to the end.
  const giveUp = setTimeout(() => client.close(), 30_000);
  try {
    let at = start;
    while (at < end) {
      const m = await client.readMessage();
      if (m.type !== "d" || m.body[0] !== 0x77) continue; // 'w'
      const lsn = new DataView(m.body.buffer, m.body.byteOffset).getBigUint64(1);
      assert.equal(lsn, at, "XLogData continues where the last one ended");
      const bytes = m.body.subarray(25);
      const segno = lsn / BigInt(segSize);
      const off = Number(lsn % BigInt(segSize));
      const name = `00000001${(segno >> 8n).toString(16).padStart(8, "0")}${
        (segno & 0xffn).toString(16).padStart(8, "0")
      }`.toUpperCase();
      const want = plain.get(name);
      assert.ok(want, `WAL of ${name} sent, which the archive does not hold`);
      assert.deepEqual(bytes, want.subarray(off, off + bytes.length), `bytes of ${name} at ${off}`);
      at += BigInt(bytes.length);
    }
  } finally {
    clearTimeout(giveUp);
  }
}

Deno.test("workers: a gzip archive's segments reach every thread, decoded once for all", async () => {
  const segSize = 16 * 1024 * 1024;
  const { dir: generated, names } = await generateArchive({ walSegSize: 16, megabytes: 200 });
  await using _generated = generated;
  await using gz = await tempDir("walrelay-workers-gz-");
  const plain = new Map<string, Uint8Array>();
  for (const name of names) {
    const bytes = await Deno.readFile(join(generated.path, name));
    plain.set(name, bytes);
    await Deno.writeFile(join(gz.path, `${name}.gz`), gzipSync(bytes, { level: 1 }));
  }
  const { relay: started, senders, httpPort } = await twoThreadCli(gz.path);
  await using relay = started;
  const held = await spreadClients(relay.port, 2, senders);
  try {
    // Each thread's sender reads the decoded segments through the relay's thread. A decoded
    // segment passed as a typed array took seconds to cross (Deno 2.9), starving both senders.
    const start = segmentStartLsn(names[0]!, segSize);
    const end = segmentStartLsn(names.at(-1)!, segSize);
    await Promise.all(held.map((h) => receiveAndCompare(h.client, start, end, plain, segSize)));
  } finally {
    for (const h of held) h.client.close();
  }
  const metrics = await (await fetch(`http://127.0.0.1:${httpPort}/metrics`)).text();
  const decodes = Number(
    /^walrelay_cache_misses_total\{cache="archive_segments"\} (\d+)$/m.exec(metrics)?.[1],
  );
  const seconds = Number(/^walrelay_archive_decode_seconds_total (\S+)$/m.exec(metrics)?.[1]);
  assert.ok(seconds > 0, `decoding took ${seconds} s`);
  // Two threads streaming every segment: one decode each, not one per thread.
  assert.ok(
    decodes >= names.length - 1 && decodes <= names.length,
    `${decodes} decodes of ${names.length} segments`,
  );
});

/** Reads XLogData until WAL up to `lsn` has arrived; returns the end received. */
async function receiveUpTo(client: RawReplClient, lsn: bigint): Promise<bigint> {
  // A sender that never wakes fails the test instead of hanging it.
  const giveUp = setTimeout(() => client.close(), 30_000);
  try {
    let end = 0n;
    while (end < lsn) {
      const m = await client.readMessage();
      if (m.type !== "d" || m.body[0] !== 0x77) continue; // 'w'
      const view = new DataView(m.body.buffer, m.body.byteOffset);
      end = view.getBigUint64(1) + BigInt(m.body.length - 25);
    }
    return end;
  } finally {
    clearTimeout(giveUp);
  }
}

/**
 * Relay mode on two threads, following a fresh primary, with no rescan to fall back on: only the
 * writer's announcements move a thread's end. `test` gets the primary, the relay once serving,
 * and a way to hold clients spread over both threads; they are closed and the relay shut down
 * after it.
 */
async function withTwoThreadRelay(
  test: (
    pg: PgCluster,
    relay: WalRelay,
    hold: (n: number) => Promise<{ client: RawReplClient }[]>,
  ) => Promise<void>,
): Promise<void> {
  await using pg = await startPrimary({ walSegSize: 1 });
  await using base = await tempDir("walrelay-workers-relay-");
  const relay = await WalRelay.start({
    walDir: base.path,
    port: 0,
    workers: 2,
    logger: silentLogger,
    upstream: { conninfo: pg.conninfo() },
    rescanMs: 3_600_000,
  });
  const held: { client: RawReplClient }[] = [];
  try {
    await relay.serving;
    await test(pg, relay, async (n) => {
      held.push(...await spreadClients(relay.port, n, () => registrySenders(relay)));
      return held;
    });
  } finally {
    for (const h of held) h.client.close();
    await relay.shutdown({ graceMs: 5000 });
  }
}

/** Each client starts streaming at the end IDENTIFY_SYSTEM tells it; returns those ends. */
async function streamFromEnd(held: { client: RawReplClient }[]): Promise<bigint[]> {
  const ends: bigint[] = [];
  for (const { client } of held) {
    const [, tli, xlogpos] = (await client.query("IDENTIFY_SYSTEM")).rows[0]!;
    const r = await client.query(`START_REPLICATION PHYSICAL ${xlogpos} TIMELINE ${tli}`);
    assert.equal(r.copyBoth, true, JSON.stringify(r.error));
    ends.push(parseLsn(xlogpos!)!);
  }
  return ends;
}

/** The senders as the relay's registry has them. */
function registrySenders(relay: WalRelay): Promise<SenderRow[]> {
  return Promise.resolve(
    relay.registry.list().map((s) => ({
      pid: s.pid,
      client_port: s.clientPort,
      worker: s.worker ?? 0,
      state: s.state,
    })),
  );
}

Deno.test("workers in relay mode: a commit on the primary wakes caught-up senders on every thread", async () => {
  await withTwoThreadRelay(async (pg, _relay, hold) => {
    const held = await hold(4);
    await streamFromEnd(held);
    await pg.sql("CREATE TABLE t AS SELECT generate_series(1, 1000) x");
    const lsn = parseLsn(await pg.currentLsn())!;
    for (const { client } of held) assert.ok(await receiveUpTo(client, lsn) >= lsn);
  });
});

Deno.test("workers in relay mode: a thread none of whose senders slept through the advances still answers with the durable end", async () => {
  await withTwoThreadRelay(async (pg, relay, hold) => {
    // No client yet: no thread is woken by these advances.
    await pg.sql("CREATE TABLE t AS SELECT generate_series(1, 1000) x");
    const lsn = parseLsn(await pg.currentLsn())!;
    await waitFor(() => relay.store.endLsn >= lsn || undefined, {
      message: "the relay never wrote the primary's WAL",
    });
    const end = relay.store.endLsn;
    const held = await hold(4);
    for (const xlogpos of await streamFromEnd(held)) {
      assert.ok(xlogpos >= end, `${formatLsn(xlogpos)} is behind the durable end`);
    }
    await pg.sql("INSERT INTO t SELECT generate_series(1, 1000)");
    const next = parseLsn(await pg.currentLsn())!;
    for (const { client } of held) assert.ok(await receiveUpTo(client, next) >= next);
  });
});
