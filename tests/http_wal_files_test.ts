// /wal/ on `serve --http` as restore_command reaches it: curl fetching whole files, never a
// partial or damaged one, compressed archives (pg_receivewal --compress, relay mode --compress)
// served as the primary's plain segments, an old timeline's compressed segment as well; the access
// rules (loopback only, bearer token, rules file), the refusal of a non-loopback --http without
// them, and HTTPS.

import assert from "node:assert/strict";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import {
  basebackup,
  copyTestdata,
  flipByte,
  freePort,
  REPO_ROOT,
  run,
  startPrimary,
  startRelay,
  startStandby,
  tempDir,
  waitFor,
} from "./_pg.ts";
import { makeCertificates } from "./_tls_util.ts";
import { listDir, spawnReceivewal } from "./_relay_util.ts";
import { startRelayMode } from "./_relay_mode_util.ts";
import { primarySegments, relayEnd } from "./_archive_util.ts";
import { parseLsn } from "../lib/wal/lsn.ts";

const TOKEN = "c0ffee-walrelay-http-token-0123456789";

async function waitHttp(url: string, init?: RequestInit): Promise<void> {
  await waitFor(async () => {
    const r = await fetch(url, init);
    await r.body?.cancel();
    return r.status === 200;
  }, { timeoutMs: 20_000, message: `${url} never answered 200` });
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("http /wal/: curl -fsS fetches whole files; missing, partial, damaged and bad names give no bytes; /metrics counts", async () => {
  const wal = await copyTestdata();
  await using _wal = { [Symbol.asyncDispose]: () => Deno.remove(wal, { recursive: true }) };
  await flipByte(`${wal}/000000010000000000000007`, 500_000);
  const httpPort = await freePort();
  await using _relay = await startRelay({ walDir: wal, args: ["--http", `127.0.0.1:${httpPort}`] });
  const base = `http://127.0.0.1:${httpPort}`;
  await waitHttp(`${base}/healthz`);
  await using out = await tempDir("walrelay_httpwal_");

  const curl = (name: string) =>
    run(["curl", "-fsS", `${base}/wal/${name}`, "-o", `${out.path}/${name.replaceAll("/", "_")}`]);
  for (const name of ["000000010000000000000006", "00000002000000000000000A", "00000002.history"]) {
    const r = await curl(name);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      await Deno.readFile(`${out.path}/${name}`),
      await Deno.readFile(`${wal}/${name}`),
      name,
    );
  }
  const cases: [string, number][] = [
    ["000000010000000000000005", 404], // not there
    ["000000010000000000000009", 404], // only its .partial is
    ["000000010000000000000007", 500], // damaged
    ["000000010000000000000009.partial", 400],
    ["0000000100000000000000..", 400],
  ];
  for (const [name, status] of cases) {
    const r = await curl(name);
    assert.equal(r.code, 22, `${name}: curl -f fails`);
    assert.match(r.stderr, new RegExp(`error: ${status}`), name);
    assert.equal(await exists(`${out.path}/${name}`), false, `${name}: no file written`);
  }
  // Paths that try to leave /wal/ never reach a file.
  for (const path of ["/wal/..%2F..%2Fetc%2Fpasswd", "/wal/%2E%2E/00000002.history"]) {
    const r = await fetch(`${base}${path}`);
    assert.ok(r.status === 400 || r.status === 404, `${path}: ${r.status}`);
    assert.doesNotMatch(await r.text(), /root:/);
  }

  const head = await run(["curl", "-fsSI", `${base}/wal/00000002000000000000000B`]);
  assert.equal(head.code, 0, head.stderr);
  assert.match(head.stdout, /^content-length: 1048576\r?$/im);
  assert.match(head.stdout, /^content-type: application\/octet-stream\r?$/im);

  const metrics = await (await fetch(`${base}/metrics`)).text();
  assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="served"\} 4$/m);
  assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="not_found"\} 1$/m);
  assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="not_complete"\} 1$/m);
  assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="damaged"\} 1$/m);
  assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="bad_name"\} [34]$/m);
});

Deno.test("http access: --http-token asks every client for the bearer token; --http-hba rules by path and address", async () => {
  await using dir = await tempDir("walrelay_httpwal_access_");
  await Deno.writeTextFile(`${dir.path}/token`, `${TOKEN}\n`);
  const seg = "000000010000000000000006";
  {
    const httpPort = await freePort();
    await using _relay = await startRelay({
      walDir: `${REPO_ROOT}/testdata/wal`,
      args: ["--http", `127.0.0.1:${httpPort}`, "--http-token", `${dir.path}/token`],
    });
    const base = `http://127.0.0.1:${httpPort}`;
    const auth = { headers: { authorization: `Bearer ${TOKEN}` } };
    await waitHttp(`${base}/healthz`, auth);
    const none = await fetch(`${base}/wal/${seg}`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get("www-authenticate"), 'Bearer realm="walrelay"');
    assert.equal(await none.text(), "a bearer token is required\n");
    const wrong = await fetch(`${base}/wal/${seg}`, {
      headers: { authorization: `Bearer ${TOKEN.slice(0, -1)}` },
    });
    assert.equal(wrong.status, 401);
    assert.equal(await wrong.text(), "the bearer token is wrong\n");
    const status = await fetch(`${base}/status`);
    assert.equal(status.status, 401);
    await status.body?.cancel();
    const ok = await fetch(`${base}/wal/${seg}`, auth);
    assert.equal(ok.status, 200);
    assert.equal((await ok.bytes()).length, 1 << 20);
    // restore_command with the token in a header file, as the README shows.
    await Deno.writeTextFile(`${dir.path}/header`, `Authorization: Bearer ${TOKEN}\n`);
    const r = await run([
      "curl",
      "-fsS",
      "-H",
      `@${dir.path}/header`,
      `${base}/wal/${seg}`,
      "-o",
      `${dir.path}/${seg}`,
    ]);
    assert.equal(r.code, 0, r.stderr);
    const metrics = await (await fetch(`${base}/metrics`, auth)).text();
    assert.match(metrics, /^walrelay_http_wal_requests_total\{outcome="denied"\} 2$/m);
  }
  {
    await Deno.writeTextFile(
      `${dir.path}/http_hba.conf`,
      "# PATH ADDRESS METHOD\n/healthz all trust\n/wal/ 127.0.0.1/32 reject\nall all token\n",
    );
    const httpPort = await freePort();
    await using _relay = await startRelay({
      walDir: `${REPO_ROOT}/testdata/wal`,
      args: [
        "--http",
        `127.0.0.1:${httpPort}`,
        "--http-hba",
        `${dir.path}/http_hba.conf`,
        "--http-token",
        `${dir.path}/token`,
      ],
    });
    const base = `http://127.0.0.1:${httpPort}`;
    await waitHttp(`${base}/healthz`);
    const wal = await fetch(`${base}/wal/${seg}`, {
      headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert.equal(wal.status, 403);
    assert.match(await wal.text(), /HTTP access rule in line 3 rejects 127\.0\.0\.1/);
    const status = await fetch(`${base}/status`);
    assert.equal(status.status, 401);
    await status.body?.cancel();
  }
});

Deno.test("http access: a non-loopback --http without --http-hba or --http-token is refused at startup", async () => {
  await using dir = await tempDir("walrelay_httpwal_refuse_");
  const cli = (args: string[]) =>
    run([
      Deno.execPath(),
      "run",
      "-A",
      `${REPO_ROOT}/cli.ts`,
      "serve",
      "--wal-dir",
      `${REPO_ROOT}/testdata/wal`,
      ...args,
    ]);
  const port = await freePort();
  const refused = await cli(["--listen", `127.0.0.1:${port}`, "--http", `0.0.0.0:${port}`]);
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    /refusing to serve HTTP on non-loopback address "0\.0\.0\.0" without access rules: give --http-hba or --http-token/,
  );
  const lone = await cli(["--http-token", `${dir.path}/token`]);
  assert.equal(lone.code, 2);
  assert.match(lone.stderr, /--http-hba, --http-token.* go with --http/);
  await Deno.writeTextFile(`${dir.path}/token`, "short\n");
  const short = await cli([
    "--listen",
    `127.0.0.1:${port}`,
    "--http",
    `0.0.0.0:${port}`,
    "--http-token",
    `${dir.path}/token`,
  ]);
  assert.equal(short.code, 1);
  assert.match(short.stderr, /holds a token shorter than 16 characters/);

  // With a token it listens on every address, and loopback clients need the token too.
  await Deno.writeTextFile(`${dir.path}/token`, `${TOKEN}\n`);
  const httpPort = await freePort();
  await using _relay = await startRelay({
    walDir: `${REPO_ROOT}/testdata/wal`,
    args: ["--http", `0.0.0.0:${httpPort}`, "--http-token", `${dir.path}/token`],
  });
  const url = `http://127.0.0.1:${httpPort}/wal/00000002.history`;
  await waitHttp(url, { headers: { authorization: `Bearer ${TOKEN}` } });
  const none = await fetch(url);
  assert.equal(none.status, 401);
  await none.body?.cancel();
});

Deno.test("http /wal/ over HTTPS: --http-tls-cert/--http-tls-key, curl --cacert", async () => {
  await using dir = await tempDir("walrelay_httpwal_tls_");
  await makeCertificates(dir.path);
  const httpPort = await freePort();
  await using _relay = await startRelay({
    walDir: `${REPO_ROOT}/testdata/wal`,
    args: [
      "--http",
      `127.0.0.1:${httpPort}`,
      "--http-tls-cert",
      `${dir.path}/server.crt`,
      "--http-tls-key",
      `${dir.path}/server.key`,
    ],
  });
  const seg = "00000002000000000000000A";
  const r = await waitFor(async () => {
    const r = await run([
      "curl",
      "-fsS",
      "--cacert",
      `${dir.path}/ca.crt`,
      `https://localhost:${httpPort}/wal/${seg}`,
      "-o",
      `${dir.path}/${seg}`,
    ]);
    return r.code === 0 ? r : undefined;
  }, { timeoutMs: 20_000, message: "curl over HTTPS never succeeded" });
  assert.equal(r.code, 0);
  assert.deepEqual(
    await Deno.readFile(`${dir.path}/${seg}`),
    await Deno.readFile(`${REPO_ROOT}/testdata/wal/${seg}`),
  );
  // Plain HTTP on the HTTPS port gets nothing.
  const plain = await run(["curl", "-fsS", `http://127.0.0.1:${httpPort}/wal/${seg}`]);
  assert.notEqual(plain.code, 0);
  assert.equal(plain.stdout, "");
});

/**
 * Fetches every segment of `names` through `/wal/` with curl, as restore_command would, and
 * compares each with the primary's. Returns how many were compared.
 */
async function curlMatchesPrimary(
  base: string,
  names: string[],
  primary: Map<string, Uint8Array>,
  out: string,
): Promise<number> {
  let compared = 0;
  for (const name of names) {
    const want = primary.get(name);
    if (!want) continue;
    const r = await run(["curl", "-fsS", `${base}/wal/${name}`, "-o", `${out}/${name}`]);
    assert.equal(r.code, 0, `${name}: ${r.stderr}`);
    const got = await Deno.readFile(`${out}/${name}`);
    assert.equal(got.length, want.length, name);
    assert.ok(got.every((b, i) => b === want[i]), `${name}: not the primary's bytes`);
    await Deno.remove(`${out}/${name}`);
    compared++;
  }
  return compared;
}

Deno.test("http /wal/: pg_receivewal --compress=gzip|lz4 archives and relay mode --compress serve the primary's plain segments; a corrupt .gz is 500 without WAL", async () => {
  await using pg = await startPrimary({
    walSegSize: 1,
    conf: { fsync: "off", wal_keep_size: "1GB", max_wal_senders: 10, autovacuum: "off" },
  });
  const methods = ["gzip", "lz4"] as const;
  const dirs = await Promise.all(methods.map((m) => pg.programs.tempDir(`walrelay-httpwal-${m}-`)));
  await using _dirs = {
    [Symbol.asyncDispose]: async () => void await Promise.all(dirs.map((d) => d.remove())),
  };
  const receivers = await Promise.all(
    methods.map((m, i) =>
      spawnReceivewal(pg.port, ["-D", dirs[i]!.pgPath, `--compress=${m}`, "-s", "1", "--no-loop"])
    ),
  );
  await using _receivers = {
    [Symbol.asyncDispose]: async () => void await Promise.all(receivers.map((r) => r.stop())),
  };
  await waitFor(
    async () => Number(await pg.sql("SELECT count(*) FROM pg_stat_replication")) === 2,
    { timeoutMs: 20_000, message: "pg_receivewal did not start streaming" },
  );
  await using relayDir = await tempDir("walrelay-httpwal-relaymode-");
  const relayHttp = await freePort();
  await using relayMode = await startRelayMode({
    walDir: relayDir.path,
    upstream: pg.conninfo(),
    args: ["--compress", "gzip", "--http", `127.0.0.1:${relayHttp}`],
  });

  await pg.pgbench(["-i", "-s", "1", "-q"]);
  await pg.pgbench(["-c", "1", "-t", "500", "-n"]);
  await pg.switchWal();
  const target = await pg.currentLsn();
  await waitFor(
    async () =>
      Number(
        await pg.sql(
          `SELECT count(*) FROM pg_stat_replication WHERE write_lsn >= '${target}'::pg_lsn`,
        ),
      ) === 3,
    { timeoutMs: 30_000, message: `pg_receivewal and the relay did not write up to ${target}` },
  );
  for (const r of receivers) assert.equal((await r.stop("SIGINT")).code, 0, r.stderr());
  const primary = await primarySegments(pg);
  await using out = await tempDir("walrelay-httpwal-out-");

  for (const [i, method] of methods.entries()) {
    const dir = dirs[i]!.path;
    const ext = method === "gzip" ? "gz" : "lz4";
    const packed = (await listDir(dir)).filter((f) => f.endsWith(`.${ext}`)).map((f) =>
      f.slice(0, 24)
    );
    assert.ok(packed.length >= 3, `${method}: ${packed.join(", ")}`);
    const httpPort = await freePort();
    await using _relay = await startRelay({
      walDir: dir,
      args: ["--http", `127.0.0.1:${httpPort}`],
    });
    const base = `http://127.0.0.1:${httpPort}`;
    await waitHttp(`${base}/healthz`);
    const head = await run(["curl", "-fsSI", `${base}/wal/${packed[0]}`]);
    assert.equal(head.code, 0, head.stderr);
    assert.match(head.stdout, /^content-length: 1048576\r?$/im);
    const compared = await curlMatchesPrimary(base, packed, primary, out.path);
    assert.ok(compared >= 3, `${method}: ${compared} segments compared`);

    if (method !== "gzip") continue;
    // A compressed file damaged in the middle: 500 naming it, and not one byte written.
    const victim = packed.at(-1)!;
    const path = `${dir}/${victim}.gz`;
    const gz = await Deno.readFile(path);
    for (let k = 0; k < 16; k++) gz[(gz.length >> 1) + k]! ^= 0xff;
    await Deno.writeFile(path, gz);
    const r = await run(["curl", "-fsS", `${base}/wal/${victim}`, "-o", `${out.path}/${victim}`]);
    assert.equal(r.code, 22, r.stderr);
    assert.match(r.stderr, /error: 500/);
    assert.equal(await exists(`${out.path}/${victim}`), false, "no file written");
    const res = await fetch(`${base}/wal/${victim}`);
    assert.equal(res.status, 500);
    assert.match(
      await res.text(),
      new RegExp(`^WAL file "${victim}" is damaged: archived WAL file ".*/${victim}\\.gz": `),
    );
  }

  // Relay mode: segments the relay compressed after writing them go out plain.
  await waitFor(async () => (await relayEnd(relayMode)) >= parseLsn(target)!, {
    timeoutMs: 30_000,
    message: `the relay did not receive up to ${target}:\n${relayMode.stderr()}`,
  });
  let packed: string[] = [];
  await waitFor(async () => {
    const files = await listDir(relayDir.path);
    packed = files.filter((f) => f.endsWith(".gz")).map((f) => f.slice(0, 24));
    return packed.length >= 3 && !files.some((f) => /^[0-9A-F]{24}$/.test(f));
  }, { timeoutMs: 30_000, message: `the relay did not compress its complete segments` });
  const base = `http://127.0.0.1:${relayHttp}`;
  const compared = await curlMatchesPrimary(base, packed, primary, out.path);
  assert.ok(compared >= 3, `relay mode: ${compared} segments compared`);
});

Deno.test("http /wal/: an old primary's whole, gzip-compressed segment of the timeline a standby left is served as its plain bytes", async () => {
  await using pg = await startPrimary({
    walSegSize: 1,
    conf: { fsync: "off", wal_keep_size: "1GB", autovacuum: "off" },
  });
  await pg.pgbench(["-i", "-s", "1", "-q"]);
  await using backup = await basebackup(pg);
  await using standby = await startStandby({
    dataDir: backup.dataDir,
    primaryConninfo: pg.conninfo(),
  });
  await pg.pgbench(["-c", "1", "-t", "100", "-n"]);
  await standby.waitForReplay(await pg.currentLsn());
  await standby.promote();
  // The old primary writes on past the fork and finishes the segment it is in: its timeline 1
  // copy of that segment is whole, and differs from timeline 2's after the fork.
  await pg.pgbench(["-c", "1", "-t", "100", "-n"]);
  await pg.switchWal();
  await standby.sql("SELECT pg_logical_emit_message(false, 'walrelay', 'after promotion')");
  await standby.switchWal();
  const history = await Deno.readTextFile(join(standby.walDir, "00000002.history"));
  const fork = /^1\s+(\S+)/m.exec(history)![1]!;
  const forkSegment = await pg.sql(`SELECT pg_walfile_name('${fork}')`);
  const before = await pg.sql(`SELECT pg_walfile_name('${fork}'::pg_lsn - 1048576)`);

  // The archive: the old primary's timeline 1 up to the fork's segment, gzipped; the new
  // primary's history and timeline 2, plain.
  await using dir = await tempDir("walrelay-httpwal-oldtli-");
  const want = new Map<string, Uint8Array>();
  for (const name of await listDir(pg.walDir)) {
    if (!/^00000001[0-9A-F]{16}$/.test(name) || name > forkSegment) continue;
    const bytes = await Deno.readFile(join(pg.walDir, name));
    want.set(name, bytes);
    await Deno.writeFile(join(dir.path, `${name}.gz`), gzipSync(bytes));
  }
  for (const name of await listDir(standby.walDir)) {
    if (/^00000002/.test(name)) {
      await Deno.copyFile(join(standby.walDir, name), join(dir.path, name));
    }
  }
  assert.ok(want.has(forkSegment) && want.has(before), [...want.keys()].join(", "));
  assert.ok(await exists(join(dir.path, `00000002${forkSegment.slice(8)}`)));

  const httpPort = await freePort();
  await using _relay = await startRelay({
    walDir: dir.path,
    args: ["--http", `127.0.0.1:${httpPort}`],
  });
  const base = `http://127.0.0.1:${httpPort}`;
  await waitHttp(`${base}/healthz`);
  await using out = await tempDir("walrelay-httpwal-oldtli-out-");
  const compared = await curlMatchesPrimary(base, [before, forkSegment], want, out.path);
  assert.equal(compared, 2);
});
