// What a connection string comes to: environment defaults, host lists, the password file, and
// what the relay refuses.

import assert from "node:assert/strict";
import { parseConninfo } from "./conninfo.ts";
import type { ConninfoEnvironment } from "./conninfo_environment.ts";
import { resolveConninfo } from "./conninfo_resolve.ts";
import { findPassfilePassword } from "./passfile.ts";

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

const host = (h: string, port = 5432, hostaddr?: string, password?: string) => ({
  host: h,
  hostaddr,
  port,
  password,
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
  // PGPORT fills the whole port list: one port for every host.
  assert.deepEqual(c.hosts, [
    { host: "h1", hostaddr: undefined, port: 6543, password: "envpw" },
    { host: "h2", hostaddr: undefined, port: 6543, password: "envpw" },
  ]);
  assert.equal(c.user, "u");
  assert.equal(c.sslmode, "require");
  assert.equal(c.applicationName, "envapp");
  const d = resolveConninfo({}, {
    environment: environment({}),
    fallbackApplicationName: "walrelay",
  });
  assert.deepEqual(d.hosts, [
    { host: "localhost", hostaddr: undefined, port: 5432, password: undefined },
  ]);
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
  assert.equal(repl.hosts[0]!.password, "for_replication");
  const sql = resolveConninfo(parseConninfo("host=db user=repl dbname=postgres"), {
    environment: e,
  });
  assert.equal(sql.hosts[0]!.password, "for_postgres_db");
  const other = resolveConninfo(parseConninfo("host=x port=1 user=repl"), { environment: e });
  assert.equal(other.hosts[0]!.password, "any");
  // PGPASSFILE moves it; group/world access makes libpq ignore it, with a warning.
  const loose = environment({ PGPASSFILE: "/etc/pgpass" }, {
    "/etc/pgpass": { text, mode: 0o100644 },
  }, warnings);
  assert.equal(
    resolveConninfo({ host: "db", user: "repl" }, { environment: loose }).hosts[0]!.password,
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

Deno.test("conninfo: host lists as libpq matches them", () => {
  const e = environment({});
  const hosts = (text: string, env = e) =>
    resolveConninfo(parseConninfo(text), { environment: env }).hosts;
  assert.deepEqual(hosts("host=a,b port=6000"), [host("a", 6000), host("b", 6000)]);
  assert.deepEqual(hosts("host=a,b port=6000,6001"), [host("a", 6000), host("b", 6001)]);
  // Empty entries take the defaults: localhost and 5432 (not PGPORT: that fills a whole list).
  assert.deepEqual(hosts("host=a,,b port=,6000,", environment({ PGPORT: "7000" })), [
    host("a"),
    host("localhost", 6000),
    host("b"),
  ]);
  assert.throws(() => hosts("host=a,b,c port=1,2"), /could not match 2 port numbers to 3 hosts/);
  assert.throws(() => hosts("host=a port=1,2"), /could not match 2 port numbers to 1 hosts/);
  // hostaddr decides the count; a host list must match it, and names the certificate check uses.
  assert.throws(
    () => hosts("host=a hostaddr=10.0.0.1,10.0.0.2"),
    /could not match 1 host names to 2 hostaddr values/,
  );
  assert.deepEqual(hosts("hostaddr=10.0.0.1,10.0.0.2 port=1"), [
    host("10.0.0.1", 1, "10.0.0.1"),
    host("10.0.0.2", 1, "10.0.0.2"),
  ]);
  assert.deepEqual(hosts("host=a,b hostaddr=,10.0.0.2"), [host("a"), host("b", 5432, "10.0.0.2")]);
  // PGHOST and PGPORT lists.
  assert.deepEqual(hosts("", environment({ PGHOST: "x,y", PGPORT: "1,2" })), [
    host("x", 1),
    host("y", 2),
  ]);
  // URLs: each host keeps its own port; one without a port gets the default.
  assert.deepEqual(hosts("postgres://h1:6000,[::1],h3:6002/db"), [
    host("h1", 6000),
    host("::1"),
    host("h3", 6002),
  ]);
  assert.throws(() => hosts("host=a,b port=1,x"), /invalid port number: "x"/);
  assert.throws(() => hosts("host=a port=70000"), /invalid port number: "70000"/);
  assert.throws(() => hosts("host=a,/tmp"), /Unix-domain socket host "\/tmp" is not supported/);
});

Deno.test("conninfo: the password file is searched per host and port", () => {
  const text = [
    "a:6000:replication:repl:pw_a",
    "b:6001:replication:repl:pw_b",
    "10.0.0.3:5432:replication:repl:pw_addr",
  ].join("\n");
  const e = environment({}, { "/home/u/.pgpass": { text, mode: 0o100600 } });
  const resolve = (s: string) =>
    resolveConninfo(parseConninfo(s), { replication: true, environment: e }).hosts.map((h) =>
      h.password
    );
  assert.deepEqual(resolve("host=a,b,c port=6000,6001,6002 user=repl"), [
    "pw_a",
    "pw_b",
    undefined,
  ]);
  // The port entry decides: a at 6001 has no line.
  assert.deepEqual(resolve("host=a,b port=6001 user=repl"), [undefined, "pw_b"]);
  // Without a host name, the address is the search key.
  assert.deepEqual(resolve("hostaddr=10.0.0.3 user=repl"), ["pw_addr"]);
  // A password in the string is every host's.
  assert.deepEqual(resolve("host=a,b port=6000,6001 user=repl password=given"), [
    "given",
    "given",
  ]);
});

Deno.test("conninfo: target_session_attrs, load_balance_hosts, connect_timeout", () => {
  const e = environment({});
  const r = (s: string, env = e) => resolveConninfo(parseConninfo(s), { environment: env });
  assert.equal(r("host=a").targetSessionAttrs, "any");
  for (const v of ["any", "read-write", "read-only", "primary", "standby", "prefer-standby"]) {
    assert.equal(r(`host=a target_session_attrs=${v}`).targetSessionAttrs, v);
  }
  assert.equal(
    r("host=a", environment({ PGTARGETSESSIONATTRS: "standby" })).targetSessionAttrs,
    "standby",
  );
  assert.throws(
    () => r("host=a target_session_attrs=master"),
    /invalid target_session_attrs value: "master"/,
  );
  assert.equal(r("host=a").loadBalanceHosts, "disable");
  assert.equal(r("host=a,b load_balance_hosts=random").loadBalanceHosts, "random");
  assert.throws(() => r("load_balance_hosts=yes"), /invalid load_balance_hosts value: "yes"/);
  assert.equal(r("connect_timeout=1").connectTimeout, 2);
  assert.equal(r("connect_timeout=10").connectTimeout, 10);
  assert.equal(r("connect_timeout=-1").connectTimeout, 0);
  assert.throws(() => r("connect_timeout=soon"), /invalid integer value "soon"/);
});

Deno.test("conninfo: what the relay cannot honour is refused, not ignored", () => {
  const e = environment({});
  const r = (s: string, env = e) => resolveConninfo(parseConninfo(s), { environment: env });
  assert.throws(() => r("host=a sslcrl=/etc/crl.pem"), /sslcrl is not supported/);
  assert.throws(() => r("host=a sslcrldir=/etc/crl"), /sslcrldir is not supported/);
  assert.throws(() => r("host=a", environment({ PGSSLCRL: "/x" })), /sslcrl is not supported/);
  // Without TLS there is nothing to check.
  r("host=a sslmode=disable sslcrl=/etc/crl.pem");
  assert.throws(() => r("channel_binding=require"), /channel_binding=require is not supported/);
  r("channel_binding=prefer");
  assert.throws(() => r("channel_binding=always"), /invalid channel_binding value/);
  assert.throws(() => r("gssencmode=require"), /gssencmode=require is not supported/);
  assert.throws(() => r("sslnegotiation=direct"), /sslnegotiation=direct is not supported/);

  // Root certificates: verify-* without one is an error (libpq does not fall back silently).
  assert.throws(
    () => r("sslmode=verify-full"),
    /root certificate file "\/home\/u\/.postgresql\/root.crt" does not exist/,
  );
  assert.throws(() => r("sslmode=verify-ca sslrootcert=/nope.crt"), /"\/nope.crt" does not exist/);
  // require with a missing file: encrypted, unverified, as libpq.
  assert.equal(r("sslmode=require sslrootcert=/nope.crt").sslrootcert, undefined);
  assert.equal(r("sslmode=verify-full sslrootcert=system").sslrootcert, undefined);
  assert.throws(() => r("sslmode=verify-ca sslrootcert=system"), /weak sslmode "verify-ca"/);
  const pem = { text: "-----BEGIN CERTIFICATE-----", mode: 0o100644 };
  const withRoot = environment({}, { "/home/u/.postgresql/root.crt": pem });
  assert.equal(r("sslmode=verify-ca", withRoot).sslrootcert, "/home/u/.postgresql/root.crt");
  // libpq would apply ~/.postgresql/root.crl next to a root certificate: refuse rather than not.
  const withCrl = environment({}, {
    "/home/u/.postgresql/root.crt": pem,
    "/home/u/.postgresql/root.crl": pem,
  });
  assert.throws(() => r("sslmode=verify-ca", withCrl), /root.crl" exists/);

  // Client certificates: a named file must exist, and a key needs a certificate.
  assert.throws(() => r("sslcert=/nope.crt"), /certificate file "\/nope.crt" does not exist/);
  assert.throws(() => r("sslkey=/k.key"), /sslkey "\/k.key" is set, but there is no client/);
  assert.equal(r("sslmode=disable sslcert=/nope.crt").sslcert, undefined);
});
