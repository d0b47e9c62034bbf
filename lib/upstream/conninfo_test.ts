// libpq connection strings as written: key/value lists, URLs, and printing without passwords.

import assert from "node:assert/strict";
import { parseConninfo, redactConninfo } from "./conninfo.ts";

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

Deno.test("conninfo: host lists printed without passwords", () => {
  assert.equal(
    redactConninfo("postgres://repl:secret@h1:6000,h2:6001/x?target_session_attrs=primary"),
    "host=h1,h2 port=6000,6001 user=repl dbname=x target_session_attrs=primary",
  );
  assert.equal(
    redactConninfo("host=h1,h2 port=1,2 password=secret sslpassword=k"),
    "host=h1,h2 port=1,2",
  );
  assert.equal(
    redactConninfo("postgresql://repl:secret@h1:6000,h2:6001/x"),
    "host=h1,h2 port=6000,6001 user=repl dbname=x",
  );
  assert.equal(
    redactConninfo("host=h1,h2 port=1,2 password=secret user=r"),
    "host=h1,h2 port=1,2 user=r",
  );
});

Deno.test("passwords never leave the conninfo shown", () => {
  assert.equal(
    redactConninfo("host=p1 port=5432 user=repl password=s3cret application_name=relay"),
    "host=p1 port=5432 user=repl application_name=relay",
  );
  assert.equal(redactConninfo("host=p1 password='a b\\' c' user=x"), "host=p1 user=x");
  assert.equal(
    redactConninfo("postgres://repl:s3cret@p1:5432/db?sslmode=require&password=x"),
    "host=p1 port=5432 user=repl dbname=db sslmode=require",
  );
  assert.equal(redactConninfo("postgresql://p1/?password=x"), "host=p1");
});
