import assert from "node:assert/strict";
import { PgError } from "../pgwire/error.ts";
import { parseCommand, type ReplicationCommand, validateSlotName } from "./command.ts";
import { KEYWORDS } from "./_lexer.ts";

/** Asserts that parsing throws a PgError with this SQLSTATE and message. */
function assertFails(text: string, code: string, message: string): void {
  assert.throws(() => parseCommand(text), (e: unknown) => {
    assert.ok(e instanceof PgError, `expected PgError for ${JSON.stringify(text)}, got ${e}`);
    assert.equal(e.code, code, text);
    assert.equal(e.message, message, text);
    assert.equal(e.severity, "ERROR");
    return true;
  });
}

function assertSyntaxError(text: string): void {
  assertFails(text, "42601", "syntax error");
}

function assertParses(text: string, expected: ReplicationCommand): void {
  assert.deepEqual(parseCommand(text), expected, text);
}

// Every command PROTOCOL.md §4.4 captured from pg_receivewal, pg_basebackup and walreceiver 15.
Deno.test("parseCommand parses what PostgreSQL 15 clients send", () => {
  assertParses("SHOW data_directory_mode", { kind: "SHOW", name: "data_directory_mode" });
  assertParses("SHOW wal_segment_size", { kind: "SHOW", name: "wal_segment_size" });
  assertParses("IDENTIFY_SYSTEM", { kind: "IDENTIFY_SYSTEM" });
  assertParses("IDENTIFY_SYSTEM;", { kind: "IDENTIFY_SYSTEM" });
  assertParses("READ_REPLICATION_SLOT rslot", { kind: "READ_REPLICATION_SLOT", slot: "rslot" });
  assertParses("TIMELINE_HISTORY 2", { kind: "TIMELINE_HISTORY", timeline: 2 });
  assertParses('START_REPLICATION SLOT "rslot" 0/1000000 TIMELINE 1', {
    kind: "START_REPLICATION",
    physical: true,
    slot: "rslot",
    lsn: 0x1000000n,
    timeline: 1,
  });
  assertParses("START_REPLICATION 0/7000000 TIMELINE 2", {
    kind: "START_REPLICATION",
    physical: true,
    lsn: 0x7000000n,
    timeline: 2,
  });
  assertParses("START_REPLICATION 0/9000000 TIMELINE 3", {
    kind: "START_REPLICATION",
    physical: true,
    lsn: 0x9000000n,
    timeline: 3,
  });
  assertParses('START_REPLICATION SLOT "pg_basebackup_13214" 0/8000000 TIMELINE 1', {
    kind: "START_REPLICATION",
    physical: true,
    slot: "pg_basebackup_13214",
    lsn: 0x8000000n,
    timeline: 1,
  });
  assertParses('CREATE_REPLICATION_SLOT "rslot" PHYSICAL', {
    kind: "CREATE_REPLICATION_SLOT",
    physical: true,
    slot: "rslot",
    temporary: false,
    reserveWal: false,
    options: [],
  });
  assertParses('CREATE_REPLICATION_SLOT "pg_basebackup_13214" TEMPORARY PHYSICAL ( RESERVE_WAL)', {
    kind: "CREATE_REPLICATION_SLOT",
    physical: true,
    slot: "pg_basebackup_13214",
    temporary: true,
    reserveWal: true,
    options: [{ name: "reserve_wal", value: undefined }],
  });
  assertParses('CREATE_REPLICATION_SLOT "pg_walreceiver_4242" TEMPORARY PHYSICAL (RESERVE_WAL)', {
    kind: "CREATE_REPLICATION_SLOT",
    physical: true,
    slot: "pg_walreceiver_4242",
    temporary: true,
    reserveWal: true,
    options: [{ name: "reserve_wal", value: undefined }],
  });
  assertParses('DROP_REPLICATION_SLOT "rslot"', {
    kind: "DROP_REPLICATION_SLOT",
    slot: "rslot",
    wait: false,
  });
  assertParses(
    "BASE_BACKUP ( LABEL 'pg_basebackup base backup',  PROGRESS,  CHECKPOINT 'fast',  WAIT 0, MANIFEST 'yes',  TARGET 'client')",
    {
      kind: "BASE_BACKUP",
      options: [
        { name: "label", value: "pg_basebackup base backup" },
        { name: "progress", value: undefined },
        { name: "checkpoint", value: "fast" },
        { name: "wait", value: 0 },
        { name: "manifest", value: "yes" },
        { name: "target", value: "client" },
      ],
    },
  );
});

Deno.test("parseCommand: only an upper-case command keyword first makes a replication command", () => {
  for (
    const sql of [
      "SELECT 1",
      "identify_system",
      "Identify_System",
      "IDENTIFY_SYSTEMX",
      "",
      "   ",
      ";",
      "SLOT x",
      "TIMELINE 1",
      "(IDENTIFY_SYSTEM)",
      '"IDENTIFY_SYSTEM"',
      "ALTER_REPLICATION_SLOT x (failover)",
      "upload_manifest",
      "\vIDENTIFY_SYSTEM",
      "select 'abc",
      "1/0 IDENTIFY_SYSTEM",
      "1FFFFFFFF/0",
    ]
  ) {
    assert.deepEqual(parseCommand(sql), { kind: "SQL", text: sql }, sql);
  }
});

Deno.test("parseCommand: PostgreSQL 17's UPLOAD_MANIFEST is refused clearly, before any COPY", () => {
  for (const text of ["UPLOAD_MANIFEST", " UPLOAD_MANIFEST ;"]) {
    assertFails(text, "0A000", "incremental backups are not supported by walrelay");
  }
});

Deno.test("parseCommand: BASE_BACKUP options as pg_basebackup 15, 17 and 18 send them", () => {
  assertParses(
    "BASE_BACKUP ( INCREMENTAL,  LABEL 'pg_basebackup base backup',  PROGRESS,  WAL,  WAIT 0,  TABLESPACE_MAP,  MANIFEST 'yes',  TARGET 'client')",
    {
      kind: "BASE_BACKUP",
      options: [
        { name: "incremental", value: undefined },
        { name: "label", value: "pg_basebackup base backup" },
        { name: "progress", value: undefined },
        { name: "wal", value: undefined },
        { name: "wait", value: 0 },
        { name: "tablespace_map", value: undefined },
        { name: "manifest", value: "yes" },
        { name: "target", value: "client" },
      ],
    },
  );
  assertParses(
    "BASE_BACKUP ( LABEL 'x',  MAX_RATE 32768,  MANIFEST_CHECKSUMS 'SHA256',  COMPRESSION 'gzip',  COMPRESSION_DETAIL 'level=5')",
    {
      kind: "BASE_BACKUP",
      options: [
        { name: "label", value: "x" },
        { name: "max_rate", value: 32768 },
        { name: "manifest_checksums", value: "SHA256" },
        { name: "compression", value: "gzip" },
        { name: "compression_detail", value: "level=5" },
      ],
    },
  );
  assertParses("BASE_BACKUP", { kind: "BASE_BACKUP", options: [] });
  // The pre-15 syntax is gone from the grammar.
  assertSyntaxError("BASE_BACKUP LABEL 'x' PROGRESS FAST NOWAIT");
});

Deno.test("parseCommand: the first token is lexed, so its lexical errors count", () => {
  assertFails("'abc", "42601", "unterminated quoted string");
  assertFails('"abc', "42601", "unterminated quoted string");
});

Deno.test("parseCommand: whitespace and the optional semicolon", () => {
  assertParses("IDENTIFY_SYSTEM ;", { kind: "IDENTIFY_SYSTEM" });
  assertParses(" \t\r\n\fIDENTIFY_SYSTEM\t;  \n", { kind: "IDENTIFY_SYSTEM" });
  assertParses("DROP_REPLICATION_SLOT abc;", {
    kind: "DROP_REPLICATION_SLOT",
    slot: "abc",
    wait: false,
  });
  assertSyntaxError("IDENTIFY_SYSTEM;;");
  assertSyntaxError("IDENTIFY_SYSTEM x");
  // \v is not whitespace to PostgreSQL 15's replication scanner.
  assertSyntaxError("IDENTIFY_SYSTEM\v");
});

Deno.test("parseCommand: identifiers are down-cased and truncated, quoted ones keep case", () => {
  assertParses("SHOW Wal_Segment_Size", { kind: "SHOW", name: "wal_segment_size" });
  assertParses('SHOW "Wal_Segment_Size"', { kind: "SHOW", name: "Wal_Segment_Size" });
  assertParses("SHOW a.b", { kind: "SHOW", name: "a.b" });
  assertParses("SHOW a . b", { kind: "SHOW", name: "a.b" });
  assertParses('SHOW a."B c".d', { kind: "SHOW", name: "a.B c.d" });
  assertParses('SHOW ""', { kind: "SHOW", name: "" });
  assertParses('SHOW a.""', { kind: "SHOW", name: "a." });
  assertParses("SHOW É", { kind: "SHOW", name: "É" });
  assertParses("SHOW a$1_", { kind: "SHOW", name: "a$1_" });
  assertParses("SHOW label", { kind: "SHOW", name: "label" });
  assertParses("SHOW timeline", { kind: "SHOW", name: "timeline" });
  assertParses("SHOW UPLOAD_MANIFEST", { kind: "SHOW", name: "upload_manifest" });

  const long = "A".repeat(91);
  assertParses(`CREATE_REPLICATION_SLOT ${long} PHYSICAL`, {
    kind: "CREATE_REPLICATION_SLOT",
    physical: true,
    slot: "a".repeat(63),
    temporary: false,
    reserveWal: false,
    options: [],
  });
  assertParses(`SHOW "${long}"`, { kind: "SHOW", name: "A".repeat(63) });
  // 63 bytes are never exceeded, and a character is never split.
  assertParses(`SHOW ${"é".repeat(40)}`, { kind: "SHOW", name: "é".repeat(31) });
  assertParses(`SHOW x${"😀".repeat(20)}`, { kind: "SHOW", name: "x" + "😀".repeat(15) });
});

Deno.test("parseCommand: PostgreSQL 15 has no doubled-quote escape in identifiers", () => {
  assertSyntaxError('SHOW "a""b"');
  assertSyntaxError('CREATE_REPLICATION_SLOT "a""b" PHYSICAL');
  assertParses("BASE_BACKUP (label 'it''s')", {
    kind: "BASE_BACKUP",
    options: [{ name: "label", value: "it's" }],
  });
  assertParses("BASE_BACKUP (label '')", {
    kind: "BASE_BACKUP",
    options: [{ name: "label", value: "" }],
  });
});

Deno.test("parseCommand: every keyword is reserved where an identifier is expected", () => {
  for (const k of KEYWORDS) {
    assertSyntaxError(`SHOW ${k}`);
    // ...but all except READ_REPLICATION_SLOT may name an option, in lower case.
    if (k === "READ_REPLICATION_SLOT") {
      assertSyntaxError(`BASE_BACKUP (${k})`);
    } else {
      assertParses(`BASE_BACKUP (${k})`, {
        kind: "BASE_BACKUP",
        options: [{ name: k.toLowerCase(), value: undefined }],
      });
    }
  }
});

Deno.test("parseCommand: TIMELINE_HISTORY and TIMELINE", () => {
  assertFails("TIMELINE_HISTORY 0", "42601", "invalid timeline 0");
  assertFails("START_REPLICATION 0/0 TIMELINE 0", "42601", "invalid timeline 0");
  // Checked as soon as read, before trailing garbage.
  assertFails("TIMELINE_HISTORY 0 x", "42601", "invalid timeline 0");
  assertFails("START_REPLICATION 0/0 TIMELINE 0 x", "42601", "invalid timeline 0");
  // The scanner's strtoul result is stored in a uint32, as on the real server.
  assertFails("TIMELINE_HISTORY 4294967296", "42601", "invalid timeline 0");
  assertParses("TIMELINE_HISTORY 4294967295", { kind: "TIMELINE_HISTORY", timeline: 0xFFFFFFFF });
  assertParses("TIMELINE_HISTORY 99999999999", { kind: "TIMELINE_HISTORY", timeline: 0x4876E7FF });
  assertParses("TIMELINE_HISTORY 99999999999999999999999", {
    kind: "TIMELINE_HISTORY",
    timeline: 0xFFFFFFFF,
  });
  assertParses("TIMELINE_HISTORY 007", { kind: "TIMELINE_HISTORY", timeline: 7 });
  assertSyntaxError("TIMELINE_HISTORY");
  assertSyntaxError("TIMELINE_HISTORY -1");
  assertSyntaxError("TIMELINE_HISTORY 2 3");
  assertSyntaxError("TIMELINE_HISTORY '2'");
  assertSyntaxError("TIMELINE_HISTORY 2x");
});

Deno.test("parseCommand: START_REPLICATION forms", () => {
  assertParses("START_REPLICATION PHYSICAL 0/0", {
    kind: "START_REPLICATION",
    physical: true,
    lsn: 0n,
  });
  assertParses("START_REPLICATION SLOT Rslot PHYSICAL ABCDEF01/fedcba98 TIMELINE 7;", {
    kind: "START_REPLICATION",
    physical: true,
    slot: "rslot",
    lsn: 0xABCDEF01_FEDCBA98n,
    timeline: 7,
  });
  assertParses("START_REPLICATION 00000000000/000000001", {
    kind: "START_REPLICATION",
    physical: true,
    lsn: 1n,
  });
  assertParses("START_REPLICATION ffffffff/FFFFFFFF", {
    kind: "START_REPLICATION",
    physical: true,
    lsn: 0xFFFFFFFF_FFFFFFFFn,
  });
  assertFails("START_REPLICATION 0/100000000", "42601", "invalid streaming start location");
  assertFails("START_REPLICATION 1FFFFFFFF/0", "42601", "invalid streaming start location");
  assertFails("START_REPLICATION 0/1FFFFFFFF;", "42601", "invalid streaming start location");
  assertFails(
    "START_REPLICATION SLOT x LOGICAL 0/1FFFFFFFF",
    "42601",
    "invalid streaming start location",
  );
  // A syntax error further along is still reported as such, as PostgreSQL (which takes the
  // oversized LSN) would.
  assertSyntaxError("START_REPLICATION FFFFFFFFF/0 x");
  assertSyntaxError("START_REPLICATION");
  assertSyntaxError("START_REPLICATION 1/G");
  assertSyntaxError("START_REPLICATION 1/");
  assertSyntaxError("START_REPLICATION 16");
  assertSyntaxError("START_REPLICATION PHYSICAL SLOT x 0/0");
  assertSyntaxError("START_REPLICATION SLOT 0/0");
  assertSyntaxError("START_REPLICATION 0/0 TIMELINE");
  assertSyntaxError("START_REPLICATION 0/0 TIMELINE 2 x");
  assertSyntaxError("START_REPLICATION SLOT x PHYSICAL 0/0 (a)");
});

Deno.test("parseCommand: logical START_REPLICATION is recognised", () => {
  assertParses("START_REPLICATION SLOT x LOGICAL 0/0", {
    kind: "START_REPLICATION",
    physical: false,
    slot: "x",
    lsn: 0n,
    options: [],
  });
  assertParses("START_REPLICATION SLOT x LOGICAL 1/2 (proto_version '1', Binary)", {
    kind: "START_REPLICATION",
    physical: false,
    slot: "x",
    lsn: 0x1_00000002n,
    options: [{ name: "proto_version", value: "1" }, { name: "binary", value: undefined }],
  });
  assertSyntaxError("START_REPLICATION SLOT x LOGICAL 0/0 TIMELINE 1");
  assertSyntaxError("START_REPLICATION SLOT x LOGICAL 0/0 (TIMELINE 'x')");
  assertSyntaxError("START_REPLICATION SLOT x LOGICAL 0/0 (a 1)");
  assertSyntaxError("START_REPLICATION SLOT x LOGICAL 0/0 ()");
  assertSyntaxError("START_REPLICATION LOGICAL 0/0");
});

Deno.test("parseCommand: CREATE_REPLICATION_SLOT options", () => {
  const physical = (slot: string, reserveWal: boolean) => ({
    kind: "CREATE_REPLICATION_SLOT",
    physical: true,
    slot,
    temporary: false,
    reserveWal,
  });
  const check = (text: string, reserveWal: boolean) => {
    const cmd = parseCommand(text);
    assert.ok(cmd.kind === "CREATE_REPLICATION_SLOT" && cmd.physical, text);
    const { options: _, ...rest } = cmd;
    assert.deepEqual(rest, physical("s1", reserveWal), text);
  };
  check("CREATE_REPLICATION_SLOT s1 PHYSICAL RESERVE_WAL", true);
  check("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL true)", true);
  check("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL TRUE)", true);
  check('CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL "TRUE")', true);
  check("CREATE_REPLICATION_SLOT s1 PHYSICAL (reserve_wal 'on')", true);
  check("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL 1)", true);
  check("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL false)", false);
  check("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL 'Off')", false);
  check("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL 0)", false);
  check("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL 4294967296)", false);

  assertSyntaxError("CREATE_REPLICATION_SLOT s1 PHYSICAL ()");
  assertSyntaxError("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL,)");
  assertSyntaxError("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL 1/0)");
  assertSyntaxError("CREATE_REPLICATION_SLOT s1 PHYSICAL RESERVE_WAL (x)");
  assertSyntaxError("CREATE_REPLICATION_SLOT ab TEMPORARY TEMPORARY PHYSICAL");
  assertSyntaxError("CREATE_REPLICATION_SLOT s1");
  assertSyntaxError("CREATE_REPLICATION_SLOT s1.x PHYSICAL");
  assertSyntaxError("CREATE_REPLICATION_SLOT TEMPORARY PHYSICAL");
  assertSyntaxError("CREATE_REPLICATION_SLOT 's1' PHYSICAL");

  const conflicting = "conflicting or redundant options";
  assertFails(
    "CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL, RESERVE_WAL)",
    "42601",
    conflicting,
  );
  assertFails("CREATE_REPLICATION_SLOT s1 PHYSICAL RESERVE_WAL RESERVE_WAL", "42601", conflicting);
  assertFails("CREATE_REPLICATION_SLOT s1 PHYSICAL TWO_PHASE", "42601", conflicting);
  assertFails("CREATE_REPLICATION_SLOT s1 PHYSICAL EXPORT_SNAPSHOT", "42601", conflicting);
  assertFails("CREATE_REPLICATION_SLOT s1 PHYSICAL (snapshot 'export')", "42601", conflicting);
  const notBoolean = "reserve_wal requires a Boolean value";
  assertFails("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL maybe)", "42601", notBoolean);
  assertFails("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL 2)", "42601", notBoolean);
  assertFails("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL 'yes')", "42601", notBoolean);
  assertFails("CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL '1')", "42601", notBoolean);
  assertFails("CREATE_REPLICATION_SLOT s1 PHYSICAL (foo)", "XX000", "unrecognized option: foo");
  assertFails(
    "CREATE_REPLICATION_SLOT s1 PHYSICAL (RESERVE_WAL ON, foo)",
    "XX000",
    "unrecognized option: foo",
  );
  assertFails(
    "CREATE_REPLICATION_SLOT s1 PHYSICAL (TEMPORARY)",
    "XX000",
    "unrecognized option: temporary",
  );
  assertFails(
    'CREATE_REPLICATION_SLOT s1 PHYSICAL ("RESERVE_WAL")',
    "XX000",
    "unrecognized option: RESERVE_WAL",
  );
});

Deno.test("parseCommand: the slot name is not validated by the parser", () => {
  const cmd = parseCommand('CREATE_REPLICATION_SLOT "A-b" PHYSICAL');
  assert.ok(cmd.kind === "CREATE_REPLICATION_SLOT");
  assert.equal(cmd.slot, "A-b");
  assertParses('READ_REPLICATION_SLOT "X y"', { kind: "READ_REPLICATION_SLOT", slot: "X y" });
  assertParses("READ_REPLICATION_SLOT a.b", { kind: "READ_REPLICATION_SLOT", slot: "a.b" });
  assertSyntaxError("READ_REPLICATION_SLOT TIMELINE");
  assertSyntaxError("READ_REPLICATION_SLOT");
});

Deno.test("parseCommand: logical CREATE_REPLICATION_SLOT is recognised", () => {
  assertParses("CREATE_REPLICATION_SLOT s1 TEMPORARY LOGICAL pgoutput (SNAPSHOT 'nothing')", {
    kind: "CREATE_REPLICATION_SLOT",
    physical: false,
    slot: "s1",
    temporary: true,
    plugin: "pgoutput",
    options: [{ name: "snapshot", value: "nothing" }],
  });
  assertParses("CREATE_REPLICATION_SLOT s1 LOGICAL test_decoding NOEXPORT_SNAPSHOT TWO_PHASE", {
    kind: "CREATE_REPLICATION_SLOT",
    physical: false,
    slot: "s1",
    temporary: false,
    plugin: "test_decoding",
    options: [{ name: "snapshot", value: "nothing" }, { name: "two_phase", value: "true" }],
  });
  assertSyntaxError("CREATE_REPLICATION_SLOT s1 LOGICAL");
});

Deno.test("parseCommand: DROP_REPLICATION_SLOT", () => {
  assertParses("DROP_REPLICATION_SLOT s1 WAIT", {
    kind: "DROP_REPLICATION_SLOT",
    slot: "s1",
    wait: true,
  });
  assertSyntaxError("DROP_REPLICATION_SLOT");
  assertSyntaxError("DROP_REPLICATION_SLOT s1 NOWAIT");
  assertSyntaxError("DROP_REPLICATION_SLOT s1 WAIT WAIT");
});

Deno.test("parseCommand: BASE_BACKUP", () => {
  assertParses("BASE_BACKUP", { kind: "BASE_BACKUP", options: [] });
  assertParses("BASE_BACKUP;", { kind: "BASE_BACKUP", options: [] });
  assertSyntaxError("BASE_BACKUP ()");
  assertSyntaxError("BASE_BACKUP (x 1/0)");
  assertSyntaxError("BASE_BACKUP LABEL 'x' MAX_RATE 1");
  assertSyntaxError("BASE_BACKUP (a b c)");
  assertSyntaxError("BASE_BACKUP (a");
});

Deno.test("parseCommand: lexical errors are reported only when the grammar gets that far", () => {
  assertSyntaxError("IDENTIFY_SYSTEM x 'abc");
  // One token of lookahead: these reach the bad token.
  assertFails("IDENTIFY_SYSTEM 'abc", "42601", "unterminated quoted string");
  assertFails("SHOW x 'abc", "42601", "unterminated quoted string");
  assertFails('SHOW "abc', "42601", "unterminated quoted string");
  assertSyntaxError("SHOW x 1FFFFFFFF/0");
});

Deno.test("parseCommand: random input throws nothing but PgError", () => {
  // A fixed-seed generator, so a failure can be reproduced.
  let seed = 0x2545F491;
  const rand = (n: number) => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return (seed >>> 0) % n;
  };
  const pieces = [
    "IDENTIFY_SYSTEM",
    "SHOW",
    "TIMELINE_HISTORY",
    "START_REPLICATION",
    "CREATE_REPLICATION_SLOT",
    "DROP_REPLICATION_SLOT",
    "READ_REPLICATION_SLOT",
    "BASE_BACKUP",
    "SLOT",
    "PHYSICAL",
    "LOGICAL",
    "TIMELINE",
    "TEMPORARY",
    "RESERVE_WAL",
    "WAIT",
    "TWO_PHASE",
    "EXPORT_SNAPSHOT",
    "(",
    ")",
    ",",
    ";",
    ".",
    " ",
    "\t",
    "\v",
    "'",
    '"',
    "''",
    '""',
    "0",
    "1",
    "4294967296",
    "0/0",
    "FFFFFFFFF/0",
    "a/b",
    "x",
    "Abc",
    "é",
    "😀",
    "\ud800",
    "\0",
    "$",
    "true",
    "'on'",
    "-",
    "/",
  ];
  const alphabet = "ABCDEF/019 ;,.()'\"_$xzé\t\n\v\r\f\\";
  for (let i = 0; i < 20000; i++) {
    let text = "";
    const n = rand(10);
    for (let j = 0; j < n; j++) {
      text += rand(3) === 0 ? alphabet[rand(alphabet.length)] : pieces[rand(pieces.length)] + " ";
    }
    try {
      const cmd = parseCommand(text);
      assert.equal(typeof cmd.kind, "string");
    } catch (e) {
      assert.ok(e instanceof PgError, `${JSON.stringify(text)} threw ${e}`);
      assert.ok(["42601", "XX000"].includes(e.code), `${JSON.stringify(text)}: ${e.code}`);
    }
  }
});

Deno.test("validateSlotName follows ReplicationSlotValidateName", () => {
  validateSlotName("rslot");
  validateSlotName("pg_basebackup_13214");
  validateSlotName("a".repeat(63));
  const hint =
    "Replication slot names may only contain lower case letters, numbers, and the underscore character.";
  assert.throws(() => validateSlotName(""), {
    code: "42602",
    message: 'replication slot name "" is too short',
  });
  assert.throws(() => validateSlotName("a".repeat(64)), {
    code: "42622",
    message: `replication slot name "${"a".repeat(64)}" is too long`,
  });
  // Bytes count, not characters.
  assert.throws(() => validateSlotName("é".repeat(32)), { message: /is too long$/ });
  for (const bad of ["Abc", "a-b", "a b", "a.b", "é", "slot$"]) {
    assert.throws(() => validateSlotName(bad), (e: unknown) => {
      assert.ok(e instanceof PgError);
      assert.equal(e.code, "42602");
      assert.equal(e.message, `replication slot name "${bad}" contains invalid character`);
      assert.equal(e.fields.hint, hint);
      return true;
    });
  }
});
