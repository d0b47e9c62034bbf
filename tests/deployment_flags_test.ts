// The V8 flags a deployment runs the relay with are the same wherever the project states them:
// `deno task start`, `deno task compile` and the README's deployment command. The bench reads
// them from the start task, so its figures are the deployed relay's.

import assert from "node:assert/strict";

const ROOT = new URL("../", import.meta.url);

Deno.test("deployment: start, compile and the README's command run with the same V8 flags", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const flagsOf = (command: string) => command.match(/--v8-flags=\S+/g) ?? [];
  const start = flagsOf(config.tasks.start);
  assert.equal(start.length, 1, config.tasks.start);
  assert.deepEqual(flagsOf(config.tasks.compile), start);
  const readme = await Deno.readTextFile(new URL("README.md", ROOT));
  const deploy = readme.match(/\ndeno run (?:[^\n]*\\\n)*[^\n]*cli\.ts serve/g) ?? [];
  assert.ok(deploy.length > 0, "the README has a deployment command");
  for (const command of deploy) assert.deepEqual(flagsOf(command), start, command);
});
