// libpq connection strings, environment defaults and the password file.

import assert from "node:assert/strict";
import {
  type ConninfoEnvironment,
  findPassfilePassword,
  parseConninfo,
  redactConninfo,
  resolveConninfo,
} from "../lib/upstream/conninfo.ts";
import { parseSize } from "../lib/upstream/retention.ts";

function environment(
  env: Record<string, string>,
  files: Record<string, { text: string; mode: number }> = {},
  warnings: string[] = [],
): ConninfoEnvironment {
  return {
    env: (n) => env[n],
    home: () => "/home/u",
    readFile: (p) => files[p],
    warn: (m) => warnings.push(m),
  };
}

Deno.test("conninfo: key/value syntax as libpq parses it", () => {
  assert.deepEqual(parseConninfo("  host = db  port=5433 dbname='my db' password='it\\'s'"), {
    host: "db",
    port: "5433",
    dbname: "my db",
    password: "it's",
  });
  assert.deepEqual(parseConninfo("password=a\\ b user=''"), { password: "a b", user: "" });
  assert.throws(() => parseConninfo("host"), /missing "="/);
  assert.throws(() => parseConninfo("host='db"), /unterminated quoted string/);
  assert.throws(() => parseConninfo("nosuch=1"), /invalid connection option "nosuch"/);
});

Deno.test("conninfo: URLs", () => {
  assert.deepEqual(
    parseConninfo("postgresql://repl:p%3Aw@[::1]:6000/db?application_name=x&sslmode=verify-full"),
    {
      user: "repl",
      password: "p:w",
      host: "::1",
      port: "6000",
      dbname: "db",
      application_name: "x",
      sslmode: "verify-full",
    },
  );
  assert.deepEqual(parseConninfo("postgres://"), {});
  assert.deepEqual(parseConninfo("postgres://a:1,b:2/x"), {
    host: "a,b",
    port: "1,2",
    dbname: "x",
  });
  assert.throws(() => parseConninfo("postgres://h/?bogus=1"), /invalid connection option/);
});

Deno.test("conninfo: environment defaults and precedence", () => {
  const e = environment({
    PGHOST: "envhost",
    PGPORT: "6543",
    PGUSER: "envuser",
    PGPASSWORD: "envpw",
    PGSSLMODE: "require",
    PGAPPNAME: "envapp",
  });
  const c = resolveConninfo(parseConninfo("host=h1,h2 user=u"), { environment: e });
  assert.equal(c.host, "h1");
  assert.equal(c.port, 6543);
  assert.equal(c.user, "u");
  assert.equal(c.password, "envpw");
  assert.equal(c.sslmode, "require");
  assert.equal(c.applicationName, "envapp");
  const d = resolveConninfo({}, {
    environment: environment({}),
    fallbackApplicationName: "walrelay",
  });
  assert.equal(d.host, "localhost");
  assert.equal(d.port, 5432);
  assert.equal(d.sslmode, "prefer");
  assert.equal(d.applicationName, "walrelay");
  assert.throws(() => resolveConninfo({ sslmode: "sometimes" }, { environment: e }), /sslmode/);
  assert.throws(() => resolveConninfo({ host: "/var/run/postgresql" }, { environment: e }), /Unix/);
});

Deno.test("conninfo: the password file, database replication, permissions", () => {
  const text = [
    "# comment",
    "db:5432:postgres:repl:for_postgres_db",
    "db:5432:replication:repl:for_replication",
    "*:*:*:repl:any",
  ].join("\n");
  const warnings: string[] = [];
  const files = { "/home/u/.pgpass": { text, mode: 0o100600 } };
  const e = environment({}, files, warnings);
  const repl = resolveConninfo(parseConninfo("host=db user=repl dbname=postgres"), {
    replication: true,
    environment: e,
  });
  assert.equal(repl.password, "for_replication");
  const sql = resolveConninfo(parseConninfo("host=db user=repl dbname=postgres"), {
    environment: e,
  });
  assert.equal(sql.password, "for_postgres_db");
  const other = resolveConninfo(parseConninfo("host=x port=1 user=repl"), { environment: e });
  assert.equal(other.password, "any");
  // PGPASSFILE moves it; group/world access makes libpq ignore it, with a warning.
  const loose = environment({ PGPASSFILE: "/etc/pgpass" }, {
    "/etc/pgpass": { text, mode: 0o100644 },
  }, warnings);
  assert.equal(
    resolveConninfo({ host: "db", user: "repl" }, { environment: loose }).password,
    undefined,
  );
  assert.match(warnings.join("\n"), /group or world access/);
  // Escapes.
  assert.equal(
    findPassfilePassword("h\\:x:*:*:*:a\\\\b\\:c", {
      host: "h:x",
      port: "1",
      dbname: "d",
      user: "u",
    }),
    "a\\b:c",
  );
});

Deno.test("conninfo: printing without the password", () => {
  assert.equal(
    redactConninfo("password=secret host=db port=5432 user=repl application_name='a b'"),
    "host=db port=5432 user=repl application_name='a b'",
  );
  assert.equal(
    redactConninfo("postgresql://repl:secret@db:5432/x"),
    "host=db port=5432 user=repl dbname=x",
  );
  assert.doesNotMatch(redactConninfo("host=db password=x sslpassword=y"), /x|y'/);
});

Deno.test("retention sizes", () => {
  assert.equal(parseSize("1024"), 1024);
  assert.equal(parseSize("64kB"), 65536);
  assert.equal(parseSize("1.5GB"), 1.5 * 1024 ** 3);
  assert.throws(() => parseSize("ten"), /invalid size/);
});
