import assert from "node:assert/strict";
import { DEFAULT_HBA_CONF, HbaParseError, hbaRejectMessage, matchHba, parseHba } from "./hba.ts";

function parseError(text: string): HbaParseError {
  try {
    parseHba(text);
  } catch (e) {
    if (e instanceof HbaParseError) return e;
    throw e;
  }
  throw new Error(`parsed without error: ${text}`);
}

const conn = (address: string, user = "repl", ssl = false) => ({ address, user, ssl });

Deno.test("hba: `all` never matches a replication connection, only `replication` does", () => {
  const rules = parseHba(
    [
      "host all all 0.0.0.0/0 trust",
      'host "replication" all 0.0.0.0/0 trust', // quoted: a database name, not the keyword
      "host postgres,sameuser all 0.0.0.0/0 trust",
      "host mydb,replication repl 10.0.0.0/8 md5",
    ].join("\n"),
  );
  assert.equal(matchHba(rules, conn("10.0.0.1"))?.line, 4);
  assert.equal(matchHba(rules, conn("192.168.0.1")), undefined);
});

Deno.test("hba: users — all, names, lists, quoted names and keywords, +role", () => {
  const rules = parseHba(
    [
      'host replication "all" 10.0.0.1/32 trust', // only the user literally named all
      "host replication alice,bob 10.0.0.2/32 trust",
      'host replication "Mixed Case","a,b" 10.0.0.3/32 trust',
      "host replication +repl 10.0.0.4/32 trust",
      "host replication all 10.0.0.5/32 trust",
    ].join("\n"),
  );
  assert.equal(matchHba(rules, conn("10.0.0.1", "repl")), undefined);
  assert.equal(matchHba(rules, conn("10.0.0.1", "all"))?.line, 1);
  assert.equal(matchHba(rules, conn("10.0.0.2", "bob"))?.line, 2);
  assert.equal(matchHba(rules, conn("10.0.0.2", "carol")), undefined);
  assert.equal(matchHba(rules, conn("10.0.0.3", "Mixed Case"))?.line, 3);
  assert.equal(matchHba(rules, conn("10.0.0.3", "a,b"))?.line, 3);
  assert.equal(matchHba(rules, conn("10.0.0.3", "mixed case")), undefined);
  assert.equal(matchHba(rules, conn("10.0.0.4", "repl"))?.line, 4);
  assert.equal(matchHba(rules, conn("10.0.0.4", "other")), undefined);
  assert.equal(matchHba(rules, conn("10.0.0.5", "anyone"))?.line, 5);
});

Deno.test("hba: connection types and TLS", () => {
  const rules = parseHba(
    [
      "local replication all trust",
      "hostgssenc replication all all trust",
      "hostssl replication all 10.0.0.0/8 scram-sha-256",
      "hostnossl replication all 10.0.0.0/8 md5",
      "hostnogssenc replication all all password",
    ].join("\n"),
  );
  assert.equal(rules[0]!.address, undefined);
  assert.equal(matchHba(rules, conn("10.1.1.1", "u", true))?.method, "scram-sha-256");
  assert.equal(matchHba(rules, conn("10.1.1.1", "u", false))?.method, "md5");
  assert.equal(matchHba(rules, conn("192.0.2.1", "u", true))?.method, "password");
});

Deno.test("hba: addresses — CIDR, netmask column, IPv6, all, samehost, samenet", () => {
  const rules = parseHba(
    [
      "host replication a 192.168.1.0/24 trust",
      "host replication b 192.168.1.0 255.255.255.0 trust",
      "host replication c 2001:db8::/32 trust",
      "host replication d fe80::1/128 trust",
      "host replication e all trust",
      "host replication f samehost trust",
      "host replication g samenet trust",
      "host replication h 127.0.0.1/32 trust",
      "host replication i 0.0.0.0/0 trust",
      "host replication j ::0/0 trust",
    ].join("\n"),
  );
  const m = (address: string, user: string) => matchHba(rules, conn(address, user))?.line;
  assert.equal(m("192.168.1.77", "a"), 1);
  assert.equal(m("192.168.2.1", "a"), undefined);
  assert.equal(m("192.168.1.77", "b"), 2);
  assert.equal(m("2001:db8:1::5", "c"), 3);
  assert.equal(m("2001:db9::5", "c"), undefined);
  assert.equal(m("fe80::1%eth0", "d"), 4);
  assert.equal(m("198.51.100.1", "e"), 5);
  assert.equal(m("::1", "e"), 5);
  // samehost: this machine's addresses exactly (loopback by default).
  assert.equal(m("127.0.0.1", "f"), 6);
  assert.equal(m("::1", "f"), 6);
  assert.equal(m("127.0.0.2", "f"), undefined);
  // samenet: the interface's subnet (127.0.0.0/8 for loopback).
  assert.equal(m("127.0.0.2", "g"), 7);
  // Families never mix: an IPv4 rule does not match an IPv4-mapped IPv6 client.
  assert.equal(m("::ffff:127.0.0.1", "h"), undefined);
  assert.equal(m("10.0.0.1", "i"), 9);
  assert.equal(m("::ffff:10.0.0.1", "i"), undefined);
  assert.equal(m("::ffff:10.0.0.1", "j"), 10);
  assert.equal(m("not-an-address", "i"), undefined);

  const withItf = {
    address: "10.9.8.7",
    user: "f",
    ssl: false,
    interfaces: [{ address: "10.9.8.7", netmask: "255.255.0.0" }],
  };
  assert.equal(matchHba(rules, withItf)?.line, 6);
  assert.equal(matchHba(rules, { ...withItf, user: "g", address: "10.9.1.1" })?.line, 7);
  assert.equal(matchHba(rules, { ...withItf, user: "f", address: "127.0.0.1" }), undefined);
});

Deno.test("hba: first match wins, reject is a match", () => {
  const rules = parseHba(
    "host replication evil 10.0.0.0/8 reject\nhost replication all 10.0.0.0/8 trust\n",
  );
  assert.equal(matchHba(rules, conn("10.0.0.1", "evil"))?.method, "reject");
  assert.equal(matchHba(rules, conn("10.0.0.1", "good"))?.method, "trust");
});

Deno.test("hba: comments, blank lines, continuations, quoting, CRLF", () => {
  const text = [
    "# TYPE DATABASE USER ADDRESS METHOD",
    "",
    "   \t  ",
    "host replication repl \\",
    "   10.0.0.0/8 \\",
    "   scram-sha-256   # trailing comment",
    'host replication "we ird""name",x 127.0.0.1/32 trust#comment',
    "host\treplication\tall\t::1/128\tmd5\r",
    'host replication "#notcomment" 127.0.0.1/32 trust',
    "host replication a, b 127.0.0.1/32 trust",
  ].join("\n");
  const rules = parseHba(text);
  assert.equal(rules.length, 5);
  assert.equal(rules[0]!.line, 4);
  assert.equal(
    rules[0]!.rawLine,
    "host replication repl    10.0.0.0/8    scram-sha-256   # trailing comment",
  );
  assert.equal(rules[0]!.method, "scram-sha-256");
  assert.equal(rules[1]!.line, 7);
  assert.deepEqual(rules[1]!.users, [{ text: 'we ird"name', quoted: true }, {
    text: "x",
    quoted: false,
  }]);
  assert.equal(rules[1]!.method, "trust"); // an unquoted # ends the line, even mid-token
  assert.equal(rules[2]!.line, 8);
  assert.equal(rules[2]!.method, "md5");
  assert.deepEqual(rules[3]!.users, [{ text: "#notcomment", quoted: true }]);
  assert.deepEqual(rules[4]!.users.map((t) => t.text), ["a", "b"]);
});

Deno.test("hba: PostgreSQL's messages for bad lines, with the line number", () => {
  const cases: [string, string, string?][] = [
    ["hots replication all all trust", 'invalid connection type "hots"'],
    ["host,local replication all all trust", "multiple values specified for connection type"],
    ["host", "end-of-line before database specification"],
    ["host replication", "end-of-line before role specification"],
    ["host replication all", "end-of-line before IP address specification"],
    ["host replication all 10.0.0.1,10.0.0.2 trust", "multiple values specified for host address"],
    ["host replication all 10.0.0.1/33 trust", 'invalid CIDR mask in address "10.0.0.1/33"'],
    ["host replication all ::1/129 trust", 'invalid CIDR mask in address "::1/129"'],
    ["host replication all 10.0.0.1/x trust", 'invalid CIDR mask in address "10.0.0.1/x"'],
    [
      "host replication all db.example.com/24 trust",
      'specifying both host name and CIDR mask is invalid: "db.example.com/24"',
    ],
    ["host replication all db.example.com trust", 'host names are not supported: "db.example.com"'],
    ["host replication all 10.0.0.1", "end-of-line before netmask specification"],
    ["host replication all 10.0.0.1 trust", 'invalid IP mask "trust": Name or service not known'],
    [
      "host replication all 10.0.0.1 255.0.0.0,255.0.0.0 trust",
      "multiple values specified for netmask",
    ],
    ["host replication all 10.0.0.1 ffff:: trust", "IP address and mask do not match"],
    ["host replication all all", "end-of-line before authentication method"],
    ["host replication all all trust,md5", "multiple values specified for authentication type"],
    ["host replication all all ident", 'invalid authentication method "ident"'],
    ["host replication all all cert", 'invalid authentication method "cert"'],
    ["local replication all 127.0.0.1 trust", 'invalid authentication method "127.0.0.1"'],
    [
      "host replication all all trust clientcert=verify-ca",
      'unrecognized authentication option name: "clientcert"',
    ],
    ["host replication all all trust foo", "authentication option not in name=value format: foo"],
    ["host replication @users all trust", 'file inclusion is not supported: "@users"'],
  ];
  for (const [line, reason] of cases) {
    const e = parseError(`# first line\n\n${line}\n`);
    assert.equal(e.reason, reason, line);
    assert.equal(e.line, 3, line);
    assert.match(e.message, /\(line 3 of configuration file "pg_hba.conf"\)/);
  }
  const hinted = parseError("host replication all 10.0.0.1\n");
  assert.equal(
    hinted.hint,
    "Specify an address range in CIDR notation, or provide a separate netmask.",
  );
  // A continued line reports its first physical line.
  assert.equal(parseError("\nhost replication \\\nall all bogus\n").line, 2);
});

Deno.test("hba: default rules admit loopback replication only", () => {
  const rules = parseHba(DEFAULT_HBA_CONF);
  assert.equal(matchHba(rules, conn("127.0.0.1"))?.method, "trust");
  assert.equal(matchHba(rules, conn("::1"))?.method, "trust");
  assert.equal(matchHba(rules, conn("127.0.0.2")), undefined);
  assert.equal(matchHba(rules, conn("10.0.0.1")), undefined);
});

Deno.test("hba: PostgreSQL 15's reject messages", () => {
  assert.equal(
    hbaRejectMessage("127.0.0.1", "repl", false),
    'no pg_hba.conf entry for replication connection from host "127.0.0.1", user "repl", no encryption',
  );
  assert.equal(
    hbaRejectMessage("::1", "repl", true),
    'no pg_hba.conf entry for replication connection from host "::1", user "repl", SSL encryption',
  );
  assert.equal(
    hbaRejectMessage("10.0.0.1", "evil", false, true),
    'pg_hba.conf rejects replication connection for host "10.0.0.1", user "evil", no encryption',
  );
});
