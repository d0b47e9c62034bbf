// The compatibility matrix, directory mode: for 15, 17 and 18, WAL written by that major across a
// timeline switch is served by the relay, and the relay is held to the server that wrote it (the
// promoted one, running on timeline 2): that major's pg_receivewal pulls the archive byte for
// byte; replication commands answer with the same columns, types, typmods and values; startup
// reports the same ParameterStatus set and answers protocol 3.2 as that major does; errors come in
// that major's words. Across majors: the newest pg_receivewal pulls older WAL, and an older one
// refuses newer WAL exactly as it refuses a real server of the newer major.

import assert from "node:assert/strict";
import { join } from "node:path";
import {
  compareDirs,
  firstDifference,
  pgPrograms,
  type RelayProcess,
  startRelay,
  tempDir,
} from "./_pg.ts";
import {
  formatLsn,
  listDir,
  replPsql,
  runReceivewal,
  segmentStartLsn,
  touch,
} from "./_relay_util.ts";
import {
  Differences,
  isArchiveFile,
  MAJORS,
  PROTOCOL_3_2,
  relayCopy,
  type StartupView,
  startupView,
  type TimelineArchive,
  timelineArchive,
  wireQuery,
  type WireResult,
} from "./_majors.ts";

const SEG = 1 << 20;
const NEWEST = Math.max(...MAJORS);

/** The name of the segment holding `pos` on timeline `tli`. */
function segmentName(tli: number, pos: bigint): string {
  const seg = pos / BigInt(SEG);
  const perId = 0x100000000n / BigInt(SEG);
  const hex = (v: bigint | number) => v.toString(16).toUpperCase().padStart(8, "0");
  return `${hex(tli)}${hex(seg / perId)}${hex(seg % perId)}`;
}

/**
 * `pg_receivewal` of `clientMajor` pulls the whole archive from the relay, from timeline 1's first
 * segment across the switch to the end of the last segment: every complete segment and the history
 * file byte for byte, and the switch segment's timeline-1 part as a `.partial` cut at the switch.
 */
async function pullArchive(
  archive: TimelineArchive,
  relay: RelayProcess,
  clientMajor: number,
): Promise<void> {
  const originals = (await listDir(archive.dir)).filter(isArchiveFile);
  const first = originals.find((n) => n.startsWith("00000001"));
  assert.ok(first, originals.join(", "));
  await using target = await tempDir("walrelay-majors-recv-", { major: clientMajor });
  // An empty .partial makes pg_receivewal start at that segment, on its timeline.
  const marker = join(target.path, `${first}.partial`);
  await touch(marker);
  await (await pgPrograms(clientMajor)).chown(marker);
  // One byte before the end: pg_receivewal stops right after renaming the last segment.
  const endpos = segmentStartLsn(archive.last, SEG) + BigInt(SEG) - 1n;
  const r = await runReceivewal(
    relay.port,
    ["-D", target.pgPath, "--no-loop", "--no-sync", "--endpos", formatLsn(endpos)],
    60_000,
    clientMajor,
  );
  assert.equal(
    r.code,
    0,
    `pg_receivewal ${clientMajor}:\n${r.stderr}\n--- relay ---\n${relay.stderr()}`,
  );
  assert.match(r.stderr, new RegExp(`switched to timeline 2 at ${formatLsn(archive.switchpoint)}`));

  const c = await compareDirs(target.path, archive.dir, isArchiveFile);
  assert.deepEqual(c.differ, []);
  assert.deepEqual(c.onlyInA, [], "files the archive does not have");
  assert.deepEqual(c.onlyInB, [], "files the client never wrote");
  assert.deepEqual(c.same, originals);
  // The switch segment's timeline-1 part: identical up to the switch point, zeros after it.
  const partial = `${segmentName(1, archive.switchpoint)}.partial`;
  assert.deepEqual((await listDir(target.path)).filter((n) => !isArchiveFile(n)), [partial]);
  const cut = Number(archive.switchpoint % BigInt(SEG));
  const got = await Deno.readFile(join(target.path, partial));
  const src = await Deno.readFile(join(archive.dir, partial));
  assert.equal(got.length, SEG);
  assert.equal(firstDifference(got.subarray(0, cut), src.subarray(0, cut)), -1);
  assert.ok(got.subarray(cut).every((b) => b === 0), "bytes past the switch point");
}

/**
 * An older `pg_receivewal` refuses the relay serving newer WAL exactly as it refuses the real
 * server of that major: the same exit code and message, but for the version text after "server
 * version" (the real one's minor and build, the relay's own).
 */
async function refusedAsByRealServer(
  archive: TimelineArchive,
  relay: RelayProcess,
  clientMajor: number,
): Promise<void> {
  await using target = await tempDir("walrelay-majors-old-", { major: clientMajor });
  const args = ["-D", target.pgPath, "--no-loop"];
  const real = await runReceivewal(archive.server.port, args, 30_000, clientMajor);
  const ours = await runReceivewal(relay.port, args, 30_000, clientMajor);
  const shape = new RegExp(
    `^pg_receivewal: error: incompatible server version (${archive.major}\\.[^;]*); ` +
      `client does not support streaming from server versions newer than (${clientMajor}\\.\\S*.*)$`,
    "m",
  );
  const realMatch = shape.exec(real.stderr);
  const ourMatch = shape.exec(ours.stderr);
  assert.ok(realMatch, `real ${archive.major} server:\n${real.stderr}`);
  assert.ok(ourMatch, `relay serving ${archive.major} WAL:\n${ours.stderr}`);
  assert.equal(ours.code, real.code);
  assert.equal(ourMatch[2], realMatch[2]);
  const errors = (s: string) => s.split("\n").filter((l) => /error:/.test(l));
  assert.equal(errors(ours.stderr).length, errors(real.stderr).length, ours.stderr);
  assert.deepEqual(await listDir(target.path), [], "nothing written");
}

/**
 * A result in one line per part, with the values that legitimately differ (position, minor
 * version) masked: columns as `name(type oid, typlen, typmod, format, table oid, column)`.
 */
function comparable(command: string, r: WireResult): Record<string, string> {
  const rows = r.rows.map((row) => {
    if (command === "IDENTIFY_SYSTEM") {
      assert.match(row[2] ?? "", /^[0-9A-F]+\/[0-9A-F]+$/, "xlogpos");
      return [row[0] ?? null, row[1] ?? null, "<lsn>", row[3] ?? null];
    }
    if (command === "SHOW server_version") {
      return [(row[0] ?? "").replace(/^(\d+)\.\d+.*$/, "$1.<minor>")];
    }
    if (command === "SHOW server_version_num") return [String(Math.floor(Number(row[0]) / 10000))];
    return row;
  });
  return {
    columns: r.descriptions.map((fields) =>
      fields.map((f) =>
        `${f.name}(${f.typeOid},${f.typeLen},${f.typeMod},${f.format},${f.tableOid},${f.column})`
      ).join(" ")
    ).join(" | "),
    rows: JSON.stringify(rows),
    tags: r.tags.join(", "),
    error: JSON.stringify(r.error ?? null),
  };
}

/** Replication commands whose answers must be the same from the relay and the real server. */
function commands(): string[] {
  return [
    "IDENTIFY_SYSTEM",
    "SHOW wal_segment_size",
    "SHOW server_version",
    "SHOW server_version_num",
    "SHOW data_directory_mode",
    "SHOW integer_datetimes",
    "SHOW wal_block_size",
    "TIMELINE_HISTORY 2",
    "CREATE_REPLICATION_SLOT matrix PHYSICAL",
    "READ_REPLICATION_SLOT matrix",
    'READ_REPLICATION_SLOT "matrix"',
    "READ_REPLICATION_SLOT nosuch",
    "DROP_REPLICATION_SLOT matrix",
  ];
}

async function sameResultSets(archive: TimelineArchive, relay: RelayProcess): Promise<void> {
  const major = archive.major;
  const diff = new Differences();
  for (const command of commands()) {
    const real = comparable(command, await wireQuery(archive.server.port, command));
    const ours = comparable(command, await wireQuery(relay.port, command));
    assert.equal(real.error, "null", `${command} on the real server`);
    for (const part of Object.keys(real)) diff.check(`${command}: ${part}`, ours[part], real[part]);
  }
  // Through that major's psql, as an operator sees it, and the newest psql.
  const mask = (s: string) => s.replace(/\|[0-9A-F]+\/[0-9A-F]+\|/, "|<lsn>|");
  for (const client of new Set([major, NEWEST])) {
    for (const command of ["IDENTIFY_SYSTEM", "TIMELINE_HISTORY 2", "SHOW wal_segment_size"]) {
      const real = await replPsql(archive.server.port, command, client);
      const ours = await replPsql(relay.port, command, client);
      assert.equal(real.code, 0, real.stderr);
      diff.check(`psql ${client}: ${command}`, mask(ours.stdout + ours.stderr), mask(real.stdout));
    }
  }
  // The type that changed between majors, as captured from real servers.
  const identify = (await wireQuery(archive.server.port, "IDENTIFY_SYSTEM")).descriptions[0];
  const timeline = identify?.find((f) => f.name === "timeline");
  assert.deepEqual(
    timeline && [timeline.typeOid, timeline.typeLen],
    major >= 17 ? [20, 8] : [23, 4],
  );
  diff.assertNone(`result sets of the relay serving ${major} WAL vs PostgreSQL ${major}`);
}

/** ParameterStatus values that every client may rely on, so they must be the server's. */
const MUST_MATCH = [
  "application_name",
  "client_encoding",
  "DateStyle",
  "default_transaction_read_only",
  "in_hot_standby",
  "integer_datetimes",
  "IntervalStyle",
  "scram_iterations",
  "search_path",
  "server_encoding",
  "session_authorization",
  "standard_conforming_strings",
];

async function sameStartup(archive: TimelineArchive, relay: RelayProcess): Promise<void> {
  const major = archive.major;
  const diff = new Differences();
  const params = { database: "replication", replication: "true", application_name: "matrix" };
  const real = await startupView(archive.server.port, { params });
  const ours = await startupView(relay.port, { params });
  assert.equal(real.error, undefined);
  assert.equal(ours.error, undefined, JSON.stringify(ours.error));
  const names = (v: StartupView) => v.parameters.map(([n]) => n).sort();
  diff.check("ParameterStatus names", names(ours), names(real));
  const realMap = new Map(real.parameters);
  const ourMap = new Map(ours.parameters);
  for (const name of MUST_MATCH) {
    diff.check(`ParameterStatus ${name}`, ourMap.get(name), realMap.get(name));
  }
  const versionMajor = (v: string | undefined) => /^(\d+)\./.exec(v ?? "")?.[1];
  assert.equal(versionMajor(realMap.get("server_version")), String(major));
  diff.check(
    "ParameterStatus server_version (major)",
    versionMajor(ourMap.get("server_version")),
    String(major),
  );
  // Runs of ParameterStatus as one `S`: the order within is the server's hash order from 17.
  const shape = (v: StartupView) => ({
    types: v.types.filter((t, i) => t !== "S" || v.types[i - 1] !== "S"),
    negotiate: v.negotiate,
    keyLength: v.keyLength,
  });
  diff.check("startup messages (protocol 3.0)", shape(ours), shape(real));

  // Protocol 3.2, as libpq 18 asks for it when told to: an 18 server takes it (32-byte cancel
  // key); 15 and 17 answer NegotiateProtocolVersion 3.0 before authentication.
  const real32 = await startupView(archive.server.port, { params, version: PROTOCOL_3_2 });
  const ours32 = await startupView(relay.port, { params, version: PROTOCOL_3_2 });
  assert.deepEqual(
    shape(real32),
    major >= 18 ? { types: ["R", "S", "K", "Z"], negotiate: undefined, keyLength: 32 } : {
      types: ["v", "R", "S", "K", "Z"],
      negotiate: { version: 0x30000, unrecognized: [] },
      keyLength: 4,
    },
  );
  diff.check("startup messages (protocol 3.2)", shape(ours32), shape(real32));
  diff.assertNone(`startup of the relay serving ${major} WAL vs PostgreSQL ${major}`);
}

/** Commands that fail, and must fail with the real server's SQLSTATE, message, detail and hint. */
function failing(archive: TimelineArchive): string[] {
  // On timeline 1 but past where timeline 2 forked from it.
  const pastFork = (archive.switchpoint / BigInt(SEG) + 1n) * BigInt(SEG);
  return [
    "SELECT 1",
    "START_REPLICATION SLOT nosuch PHYSICAL 0/1000000 TIMELINE 1",
    "DROP_REPLICATION_SLOT nosuch",
    'CREATE_REPLICATION_SLOT "Bad-Name" PHYSICAL',
    "TIMELINE_HISTORY 0",
    "TIMELINE_HISTORY 7",
    "START_REPLICATION 0/1000000 TIMELINE 3",
    `START_REPLICATION ${formatLsn(pastFork)} TIMELINE 1`,
    "START_REPLICATION garbage",
  ];
}

async function sameErrors(archive: TimelineArchive, relay: RelayProcess): Promise<void> {
  const major = archive.major;
  const diff = new Differences();
  const fields = (e: Record<string, string> | undefined) =>
    e && { S: e.S, V: e.V, C: e.C, M: e.M, D: e.D, H: e.H };
  // psql's verbose report without the source location, which only a real server has.
  const said = (s: string) => s.split("\n").filter((l) => l && !l.startsWith("LOCATION:"));
  for (const command of failing(archive)) {
    const real = await wireQuery(archive.server.port, command);
    const ours = await wireQuery(relay.port, command);
    assert.ok(real.error, `${command} fails on PostgreSQL ${major}`);
    if (!diff.check(command, fields(ours.error), fields(real.error))) continue;
    const realPsql = await replPsql(archive.server.port, command, major);
    const ourPsql = await replPsql(relay.port, command, major);
    diff.check(`psql ${major}: ${command}`, said(ourPsql.stderr), said(realPsql.stderr));
  }
  diff.assertNone(`errors of the relay serving ${major} WAL vs PostgreSQL ${major}`);

  // The walsender's role check changed its words in 16. walrelay has no role catalog (its hba and
  // password rules decide), so only the real server says it; pinned here as the words to use.
  await archive.server.sql("CREATE ROLE norepl LOGIN");
  const refused = await startupView(archive.server.port, { user: "norepl" });
  assert.deepEqual(
    fields(refused.error),
    major >= 16
      ? {
        S: "FATAL",
        V: "FATAL",
        C: "42501",
        M: "permission denied to start WAL sender",
        D: "Only roles with the REPLICATION attribute may start a WAL sender process.",
        H: undefined,
      }
      : {
        S: "FATAL",
        V: "FATAL",
        C: "42501",
        M: "must be superuser or replication role to start walsender",
        D: undefined,
        H: undefined,
      },
  );
}

for (const major of MAJORS) {
  Deno.test(`PostgreSQL ${major}: the relay serves its archive as a ${major} server would`, async (t) => {
    await using archive = await timelineArchive(major);
    await using copy = await relayCopy(archive);
    await using relay = await startRelay({ walDir: copy.path });

    await t.step(
      `pg_receivewal ${major} pulls the archive across the timeline switch`,
      () => pullArchive(archive, relay, major),
    );
    if (major < NEWEST) {
      await t.step(
        `pg_receivewal ${NEWEST} pulls ${major}'s archive too`,
        () => pullArchive(archive, relay, NEWEST),
      );
    }
    for (const older of MAJORS.filter((m) => m < major)) {
      await t.step(
        `pg_receivewal ${older} refuses ${major} WAL as it refuses ${major}`,
        () => refusedAsByRealServer(archive, relay, older),
      );
    }
    await t.step(
      "result sets, field by field, and through psql",
      () => sameResultSets(archive, relay),
    );
    await t.step(
      "startup: ParameterStatus, BackendKeyData, protocol 3.2",
      () => sameStartup(archive, relay),
    );
    await t.step("errors in that major's words", () => sameErrors(archive, relay));
  });
}
