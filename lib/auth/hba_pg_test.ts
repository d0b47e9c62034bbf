import assert from "node:assert/strict";
import { HbaParseError, parseHba } from "./hba.ts";
import { parseIp } from "./_ip.ts";
import { clusterPermitted, startPrimary } from "../../tests/_pg.ts";

// Lines PostgreSQL 15 parses (or refuses); each is checked against the pg_hba_file_rules view.
const LINES = [
  "host replication repl 10.0.0.0/8 scram-sha-256",
  "hostssl replication,all all 192.168.1.5/24 md5",
  'hostnossl replication a,b,"C d" 10.1.0.0 255.255.0.0 trust',
  'host replication "all" ::1/128 password',
  "host replication all 2001:db8::/32 reject",
  "host replication all samehost trust",
  "host replication all samenet trust",
  "host replication all all trust",
  "local replication all trust",
  "hostnogssenc replication all all trust",
  "host replication a, b 127.0.0.1/32 trust",
  "host replication a ,b 127.0.0.1/32 trust",
  'host replication "we ird""name",x 127.0.0.1/32 trust#comment',
  'host replication "#x" 127.0.0.1/32 trust',
  "host replication all 10.0.0.1/+8 trust",
  "host replication all \\\n 10.0.0.0/8 \\\n trust",
  '"host" "replication" all all trust',
  'host replication all 10.0.0.0/0 trust # comment, with "quotes"',
  'host replication all "10.0.0.0/8" trust',
  "host replication all all trust\t\r",
  // Refused by both, with the same words.
  "hots replication all all trust",
  "host,local replication all all trust",
  "host",
  "host replication",
  "host replication all",
  "host replication all 10.0.0.1,10.0.0.2 trust",
  "host replication all 10.0.0.1/33 trust",
  "host replication all ::1/129 trust",
  "host replication all 10.0.0.1/x trust",
  "host replication all db.example.com/24 trust",
  "host replication all 10.0.0.1",
  "host replication all 10.0.0.1 trust",
  "host replication all 10.0.0.1 255.0.0.0,255.0.0.0 trust",
  "host replication all 10.0.0.1 ffff:: trust",
  "host replication all all",
  "host replication all all trust,md5",
  "host replication all all bogus",
  "local replication all 127.0.0.1 trust",
  "host replication all all trust foo",
  "host replication all 10.0.0.1/ trust",
  "host replication a, all trust",
  'host replication all all "trust',
];

interface ViewRow {
  line_number: number;
  type: string | null;
  database: string[] | null;
  user_name: string[] | null;
  address: string | null;
  netmask: string | null;
  auth_method: string | null;
  error: string | null;
}

Deno.test({
  name: "hba: parsing agrees with PostgreSQL 15's pg_hba_file_rules",
  ignore: !clusterPermitted(),
}, async () => {
  await using cluster = await startPrimary();
  try {
    // Line 1 keeps psql working; the server only re-reads the file on reload, the view at once.
    const text = "local all postgres trust\n" + LINES.join("\n") + "\n";
    await Deno.writeTextFile(`${cluster.dataDir}/pg_hba.conf`, text);
    const rows: ViewRow[] = JSON.parse(
      await cluster.sql("SELECT json_agg(r ORDER BY line_number) FROM pg_hba_file_rules r"),
    );
    let checked = 0;
    for (const row of rows) {
      if (row.line_number === 1) continue;
      // Parse this line alone (with its continuations), after blank lines keeping its number.
      const physical = text.split("\n");
      let source = physical[row.line_number - 1]!;
      for (let n = row.line_number; source.endsWith("\\"); n++) source += "\n" + physical[n];
      const label = `line ${row.line_number}: ${source.replaceAll("\n", "⏎")}`;
      source = "\n".repeat(row.line_number - 1) + source;
      let rules;
      try {
        rules = parseHba(source);
      } catch (e) {
        assert.ok(e instanceof HbaParseError, label);
        assert.equal(e.reason, row.error, label);
        assert.equal(e.line, row.line_number, label);
        checked++;
        continue;
      }
      const rule = rules.at(-1)!;
      if (row.error === "hostssl record cannot match because SSL is disabled") {
        // The test cluster has no certificate; walrelay decides TLS per connection instead.
        assert.equal(rule.type, "hostssl", label);
        checked++;
        continue;
      }
      assert.equal(row.error, null, `${label}: PostgreSQL refused it: ${row.error}`);
      assert.equal(rule.line, row.line_number, label);
      assert.equal(rule.type, row.type, label);
      assert.deepEqual(rule.databases.map((t) => t.text), row.database, label);
      assert.deepEqual(rule.users.map((t) => t.text), row.user_name, label);
      assert.equal(rule.method, row.auth_method, label);
      const a = rule.address;
      if (a === undefined) assert.equal(row.address, null, label);
      else if (a.kind !== "network") assert.equal(a.kind, row.address, label);
      else {
        assert.equal(a.address.toHex(), parseIp(row.address!)?.toHex(), label);
        assert.equal(a.mask.toHex(), parseIp(row.netmask!)?.toHex(), label);
      }
      checked++;
    }
    assert.equal(checked, LINES.length);
  } finally {
    await cluster.stop();
  }
});
