// Random and mutated messages in every phase (startup, SASL, commands, streaming replies). The
// relay must answer with an ErrorResponse or close, never crash, leak no sender slot or file
// descriptor, and keep streaming to a well-behaved pg_receivewal throughout.

import assert from "node:assert/strict";
import { buildScramVerifier } from "../lib/auth/scram.ts";
import { MessageBuilder } from "../lib/pgwire/messages.ts";
import { delay, startRelay, tempDir, TESTDATA, waitFor } from "./_pg.ts";
import { spawnReceivewal } from "./_relay_util.ts";

const SEGMENTS = [
  "000000010000000000000006",
  "000000010000000000000007",
  "000000010000000000000008",
];
const MAX_SENDERS = 8;

/** Deterministic PRNG (a failure names its seed). */
function rng(seed: number) {
  let s = seed >>> 0;
  const next = () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
  return {
    next,
    int: (n: number) => Math.floor(next() * n),
    bytes: (n: number) => Uint8Array.from({ length: n }, () => Math.floor(next() * 256)),
    pick: <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!,
  };
}
type Rng = ReturnType<typeof rng>;

function startup(params: Record<string, string>): Uint8Array {
  const b = new MessageBuilder(null).int32(196608);
  for (const [k, v] of Object.entries(params)) b.cstring(k).cstring(v);
  return b.byte(0).finish();
}

function typed(type: string, body: Uint8Array): Uint8Array {
  return new MessageBuilder(type).bytes(body).finish();
}

/** A message with a lying length word: negative, huge, zero or short. */
function badLength(r: Rng, type: string | null): Uint8Array {
  const len = r.pick([-1, -0x7fffffff, 0, 1, 3, 0x7fffffff, 1 << 30, 10001, r.int(100)]);
  const body = r.bytes(r.int(32));
  const head = type === null ? new Uint8Array(4) : new Uint8Array(5);
  const v = new DataView(head.buffer);
  if (type !== null) head[0] = type.charCodeAt(0);
  v.setInt32(type === null ? 0 : 1, len);
  const out = new Uint8Array(head.length + body.length);
  out.set(head);
  out.set(body, head.length);
  return out;
}

const QUERIES = [
  "IDENTIFY_SYSTEM",
  "SHOW wal_segment_size",
  "TIMELINE_HISTORY 2",
  "READ_REPLICATION_SLOT s",
  "CREATE_REPLICATION_SLOT fz TEMPORARY PHYSICAL ( RESERVE_WAL)",
  "DROP_REPLICATION_SLOT fz",
  "START_REPLICATION 0/600000 TIMELINE 1",
  'START_REPLICATION SLOT "x" PHYSICAL 0/0',
  "BASE_BACKUP ( LABEL 'x', PROGRESS)",
  "SELECT 1",
];

function mutate(r: Rng, text: string): string {
  const chars = [...text];
  for (let i = 0, n = 1 + r.int(4); i < n; i++) {
    const at = r.int(chars.length + 1);
    switch (r.int(4)) {
      case 0:
        chars.splice(at, 1);
        break;
      case 1:
        chars.splice(
          at,
          0,
          r.pick(["'", '"', "(", ")", ",", "/", ";", " ", "\\", "0", "\u00ff", "\0"]),
        );
        break;
      case 2:
        chars.splice(at, 0, String.fromCharCode(r.int(128)));
        break;
      default:
        chars.splice(at, 0, ...r.pick(QUERIES).slice(0, r.int(12)));
    }
  }
  return chars.join("");
}

/** Writes, then drains whatever comes back until the peer closes or goes quiet. */
async function exchange(port: number, chunks: Uint8Array[], quietMs = 30): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const drained = (async () => {
    const buf = new Uint8Array(65536);
    try {
      while (true) {
        const n = await Promise.race([
          conn.read(buf),
          delay(quietMs).then(() => "quiet" as const),
        ]);
        if (n === null || n === "quiet") return;
      }
    } catch { /* reset by the relay: an acceptable answer */ }
  })();
  try {
    for (const c of chunks) await conn.write(c);
  } catch { /* the relay closed on us mid-way: acceptable */ }
  await drained;
  try {
    conn.close();
  } catch { /* closed */ }
}

function fdCount(pid: number): number {
  return [...Deno.readDirSync(`/proc/${pid}/fd`)].length;
}

Deno.test("fuzz: 10,000+ hostile messages in every phase; relay survives, leaks nothing", async () => {
  await using dir = await tempDir("walrelay_fuzz_");
  const walDir = `${dir.path}/wal`;
  await Deno.mkdir(walDir);
  await Deno.copyFile(`${TESTDATA}/${SEGMENTS[0]}`, `${walDir}/${SEGMENTS[0]}`);
  await Deno.writeTextFile(
    `${dir.path}/hba`,
    "host replication scram 127.0.0.1/32 scram-sha-256\nhost replication all 127.0.0.1/32 trust\n",
  );
  await Deno.writeTextFile(`${dir.path}/pw`, `scram:${await buildScramVerifier("pw")}\n`);
  await using relay = await startRelay({
    walDir,
    args: [
      "--max-senders",
      String(MAX_SENDERS),
      "--hba",
      `${dir.path}/hba`,
      "--passwords",
      `${dir.path}/pw`,
      "--authentication-timeout",
      "2",
    ],
  });
  await delay(300);
  const baselineFds = fdCount(relay.pid);

  // A well-behaved client streaming the whole time; more WAL lands while the fuzzing runs.
  await using out = await tempDir("walrelay_fuzz_out_");
  await Deno.writeFile(`${out.path}/${SEGMENTS[0]}.partial`, new Uint8Array());
  await using receiver = await spawnReceivewal(relay.port, [
    "-D",
    out.path,
    "-n",
    "--endpos",
    "0/8FFFFF", // pg_receivewal stops only once past --endpos
  ]);

  const r = rng(20261124);
  let sent = 0;
  const port = relay.port;
  const trustStartup = () =>
    startup({ user: "fuzz", database: "replication", replication: "true" });
  const jobs: (() => Promise<void>)[] = [];
  for (let i = 0; i < 400; i++) {
    // Startup phase: garbage, lying lengths, truncated packets, protocol versions.
    jobs.push(async () => {
      const kind = r.int(5);
      const chunks = kind === 0
        ? [r.bytes(1 + r.int(64))]
        : kind === 1
        ? [badLength(r, null)]
        : kind === 2
        ? [trustStartup().subarray(0, r.int(30))]
        : kind === 3
        ? [
          new MessageBuilder(null).int32(r.pick([0x20000, 0x30001, 0x40000, 80877102, 80877103]))
            .bytes(r.bytes(r.int(20))).finish(),
        ]
        : [startup({ user: mutate(r, "fuzz"), replication: mutate(r, "true") })];
      sent += chunks.length;
      await exchange(port, chunks);
    });
  }
  for (let i = 0; i < 300; i++) {
    // SASL phase: a SCRAM user, then random or mangled password messages.
    jobs.push(async () => {
      const chunks = [startup({ user: "scram", database: "replication", replication: "true" })];
      for (let j = 0, n = 1 + r.int(4); j < n; j++) {
        chunks.push(
          r.int(3) === 0
            ? badLength(r, "p")
            : typed(r.pick(["p", "p", "Q", "X", "d"]), r.bytes(r.int(200))),
        );
      }
      sent += chunks.length;
      await exchange(port, chunks);
    });
  }
  for (let i = 0; i < 250; i++) {
    // Command phase: many mutated queries and stray message types per connection.
    jobs.push(async () => {
      const chunks = [trustStartup()];
      for (let j = 0; j < 20; j++) {
        const k = r.int(10);
        chunks.push(
          k < 6
            ? new MessageBuilder("Q").cstring(mutate(r, r.pick(QUERIES))).finish()
            : k < 8
            ? typed(
              r.pick(["P", "B", "E", "S", "H", "F", "d", "c", "f", "D", "C"]),
              r.bytes(r.int(40)),
            )
            : k < 9
            ? typed(String.fromCharCode(r.int(256)), r.bytes(r.int(40)))
            : badLength(r, r.pick(["Q", "d", "p"])),
        );
      }
      sent += chunks.length;
      await exchange(port, chunks);
    });
  }
  for (let i = 0; i < 250; i++) {
    // Streaming phase: START_REPLICATION, then random replies inside COPY.
    jobs.push(async () => {
      const chunks = [
        trustStartup(),
        new MessageBuilder("Q").cstring("START_REPLICATION 0/600000 TIMELINE 1").finish(),
      ];
      for (let j = 0; j < 20; j++) {
        const k = r.int(6);
        const body = k === 0
          ? new MessageBuilder("d").byte(0x72).bytes(r.bytes(r.int(40))).finish() // 'r', any length
          : k === 1
          ? new MessageBuilder("d").byte(0x68).bytes(r.bytes(r.int(30))).finish() // 'h'
          : k === 2
          ? typed("d", r.bytes(r.int(64)))
          : k === 3
          ? typed(r.pick(["c", "X", "Q", "f"]), r.bytes(r.int(8)))
          : k === 4
          ? badLength(r, "d")
          : new MessageBuilder("d").byte(0x72).int64(BigInt(r.int(1e9))).int64(0n).int64(0n)
            .int64(0n).byte(1).finish();
        chunks.push(body);
      }
      sent += chunks.length;
      await exchange(port, chunks, 20);
    });
  }

  // Run with a little concurrency; drip new segments in as we go.
  let next = 0;
  const worker = async () => {
    while (next < jobs.length) {
      const job = jobs[next++]!;
      await job();
      if (next === Math.floor(jobs.length / 3)) {
        await Deno.copyFile(`${TESTDATA}/${SEGMENTS[1]}`, `${walDir}/${SEGMENTS[1]}`);
      }
      if (next === Math.floor((2 * jobs.length) / 3)) {
        await Deno.copyFile(`${TESTDATA}/${SEGMENTS[2]}`, `${walDir}/${SEGMENTS[2]}`);
      }
    }
  };
  await Promise.all([worker(), worker(), worker(), worker()]);
  console.log(`fuzz: ${sent} messages over ${jobs.length} connections`);
  assert.ok(sent >= 10_000, `only ${sent} messages sent`);

  assert.equal(relay.exited, false, `relay died:\n${relay.stderr().slice(-3000)}`);
  assert.doesNotMatch(relay.stderr(), /unexpected failure|internal error|Uncaught/);

  // The good client got everything, byte for byte.
  const status = await receiver.status;
  assert.equal(status.code, 0, receiver.stderr());
  for (const name of SEGMENTS.slice(0, 3)) {
    assert.deepEqual(
      await Deno.readFile(`${out.path}/${name}`),
      await Deno.readFile(`${TESTDATA}/${name}`),
      name,
    );
  }

  // Every sender slot is free again: MAX_SENDERS clients are admitted at once.
  await waitFor(() => fdCount(relay.pid) <= baselineFds + 4 || undefined, {
    timeoutMs: 15_000,
    message: `file descriptors did not return to ${baselineFds}`,
  });
  const conns: Deno.Conn[] = [];
  try {
    for (let i = 0; i < MAX_SENDERS; i++) {
      const c = await Deno.connect({ hostname: "127.0.0.1", port });
      await c.write(trustStartup());
      const buf = new Uint8Array(4096);
      const n = await c.read(buf);
      assert.ok(
        n !== null && buf[0] === 0x52,
        `client ${i} admitted (got ${String.fromCharCode(buf[0]!)})`,
      );
      conns.push(c);
    }
  } finally {
    for (const c of conns) c.close();
  }
  const rss = Number(
    /VmRSS:\s+(\d+)/.exec(await Deno.readTextFile(`/proc/${relay.pid}/status`))![1],
  );
  console.log(
    `fuzz: relay RSS ${Math.round(rss / 1024)} MB, fds ${
      fdCount(relay.pid)
    } (baseline ${baselineFds})`,
  );
  assert.ok(rss < 512 * 1024, `relay memory grew to ${rss} kB`);
});
