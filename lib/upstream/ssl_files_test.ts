// Client certificates and keys as libpq finds and checks them, with files made by openssl.

import assert from "node:assert/strict";
import { parseConninfo } from "./conninfo.ts";
import { type ConninfoEnvironment, processEnvironment } from "./conninfo_environment.ts";
import { resolveConninfo } from "./conninfo_resolve.ts";
import { loadClientCertificate } from "./ssl_files.ts";

Deno.test("conninfo: client certificates and keys, with libpq's checks", async () => {
  const d = await Deno.makeTempDir({ prefix: "walrelay-clientcert-" });
  await using _cleanup = { [Symbol.asyncDispose]: () => Deno.remove(d, { recursive: true }) };
  const openssl = async (args: string[]): Promise<void> => {
    const r = await new Deno.Command("openssl", { args, cwd: d, stdout: "null", stderr: "piped" })
      .output();
    if (!r.success) throw new Error(`openssl ${args[0]}: ${new TextDecoder().decode(r.stderr)}`);
  };
  await openssl(["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=ca"]
    .concat(["-keyout", "ca.key", "-out", "ca.crt"]));
  await openssl(["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=repl", "-keyout"]
    .concat(["c.key", "-out", "c.csr"]));
  await openssl(["x509", "-req", "-in", "c.csr", "-CA", "ca.crt", "-CAkey", "ca.key"]
    .concat(["-CAcreateserial", "-days", "2", "-out", "c.crt"]));
  await openssl(["pkcs8", "-topk8", "-in", "c.key", "-out", "enc.key", "-passout", "pass:s3"]);
  await openssl(["rsa", "-in", "c.key", "-aes256", "-out", "trad.key", "-passout", "pass:s3"]);
  await Deno.writeTextFile(`${d}/bad.crt`, "not a certificate\n");
  for (const k of ["c.key", "enc.key", "trad.key", "ca.key"]) await Deno.chmod(`${d}/${k}`, 0o600);
  await Deno.mkdir(`${d}/.postgresql`);
  await Deno.copyFile(`${d}/c.crt`, `${d}/.postgresql/postgresql.crt`);
  await Deno.copyFile(`${d}/c.key`, `${d}/.postgresql/postgresql.key`);
  await Deno.chmod(`${d}/.postgresql/postgresql.key`, 0o600);

  const real: ConninfoEnvironment = {
    env: () => undefined,
    home: () => d,
    readFile: processEnvironment.readFile,
    warn: () => {},
  };
  const r = (s: string) => resolveConninfo(parseConninfo(s), { environment: real });
  const cert = await Deno.readTextFile(`${d}/c.crt`);

  // The default files under ~/.postgresql, as libpq finds them.
  const byDefault = r("host=a sslmode=require");
  assert.equal(byDefault.sslcert, `${d}/.postgresql/postgresql.crt`);
  assert.equal(byDefault.sslkey, `${d}/.postgresql/postgresql.key`);
  const loaded = loadClientCertificate(byDefault, real)!;
  assert.equal(loaded.cert, cert);
  assert.match(loaded.key, /^-----BEGIN PRIVATE KEY-----/);
  // Named files win; an encrypted key (PKCS #8 or traditional) is opened with sslpassword.
  for (const key of ["enc.key", "trad.key"]) {
    const c = r(`sslmode=require sslcert=${d}/c.crt sslkey=${d}/${key} sslpassword=s3`);
    assert.equal(c.sslkey, `${d}/${key}`);
    assert.match(loadClientCertificate(c, real)!.key, /^-----BEGIN PRIVATE KEY-----/);
    assert.throws(
      () => r(`sslmode=require sslcert=${d}/c.crt sslkey=${d}/${key}`),
      /the key is encrypted and sslpassword is not set/,
    );
    // Many wrong passphrases: now and then one gets past the padding check and fails later.
    for (let i = 0; i < 600; i++) {
      assert.throws(
        () => r(`sslmode=require sslcert=${d}/c.crt sslkey=${d}/${key} sslpassword=wrong${i}`),
        /could not load private key file .*wrong sslpassword\?/,
      );
    }
  }
  // The key must be the certificate's, private, and present.
  assert.throws(
    () => r(`sslmode=require sslcert=${d}/c.crt sslkey=${d}/ca.key`),
    /certificate does not match private key file/,
  );
  assert.throws(
    () => r(`sslmode=require sslcert=${d}/c.crt sslkey=${d}/none.key`),
    /certificate present, but not private key file ".*none.key"/,
  );
  assert.throws(
    () => r(`sslmode=require sslcert=${d}/bad.crt sslkey=${d}/c.key`),
    /could not load client certificate file ".*bad.crt"/,
  );
  await Deno.chmod(`${d}/c.key`, 0o644);
  assert.throws(
    () => r(`sslmode=require sslcert=${d}/c.crt sslkey=${d}/c.key`),
    /private key file ".*c.key" has group or world access/,
  );
  // Group-readable is allowed for a file owned by root (system-wide keys shared via a group).
  await Deno.chmod(`${d}/c.key`, 0o640);
  const owned = (uid: number): ConninfoEnvironment => ({
    ...real,
    readFile: (p) => {
      const f = real.readFile(p);
      return f && { ...f, uid };
    },
  });
  const rootOwned = owned(0);
  assert.ok(loadClientCertificate(
    resolveConninfo(parseConninfo(`sslmode=require sslcert=${d}/c.crt sslkey=${d}/c.key`), {
      environment: rootOwned,
    }),
    rootOwned,
  ));
  const userOwned = owned(1000);
  assert.throws(
    () =>
      resolveConninfo(parseConninfo(`sslmode=require sslcert=${d}/c.crt sslkey=${d}/c.key`), {
        environment: userOwned,
      }),
    /group or world access/,
  );
});
