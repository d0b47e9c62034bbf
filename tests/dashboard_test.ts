// The live dashboard in headless Chromium (Debian's, driven by playwright-core): it loads without
// console errors, lists the relay's clients and its charts keep moving. The screenshot is left in
// out/test-artifacts/dashboard.png.

import assert from "node:assert/strict";
import { join } from "node:path";
import { copyFiles, REPO_ROOT, tempDir, TESTDATA, waitFor } from "./_pg.ts";
import { spawnReceivewal, testdataInfo, touch } from "./_relay_util.ts";
import { startStatusRelay } from "./_status_relay.ts";
import { launchChromium } from "./_browser.ts";

const ARTIFACTS = join(REPO_ROOT, "out", "test-artifacts");

Deno.test("the dashboard lists the clients and its charts update, without console errors", async () => {
  const info = await testdataInfo();
  await using walDir = await tempDir("walrelay-dash-");
  await copyFiles(TESTDATA, walDir.path);
  await using r = await startStatusRelay({ walDir: walDir.path });
  await using target = await tempDir("walrelay-dash-recv-");
  // Start from the first segment, so there is WAL to send and a lag to measure.
  await touch(join(target.path, `${info.timelines[0]!.first_segment}.partial`));
  await using receiver = await spawnReceivewal(r.port, ["-D", target.path, "-s", "1"]);
  const pid = await waitFor(async () => {
    if (receiver.exited) throw new Error(`pg_receivewal exited:\n${receiver.stderr()}`);
    const s = (await r.status()).senders.find((s) => s.state === "streaming");
    return s?.flush_lag !== null && s?.pid;
  }, { timeoutMs: 30_000, message: "pg_receivewal is not streaming with a measured lag" });

  const browser = await launchChromium();
  try {
    const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
    const problems: string[] = [];
    page.on("console", (m) => {
      if (m.type() === "error" || m.type() === "warning") problems.push(`${m.type()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`pageerror: ${e.message}`));
    page.on("requestfailed", (req) => problems.push(`request failed: ${req.url()}`));
    const response = await page.goto(r.url);
    assert.equal(response?.status(), 200);
    assert.equal(await page.title(), "walrelay");

    // The client table lists pg_receivewal.
    const row = page.locator(`#clients tbody tr[data-pid="${pid}"]`);
    await row.waitFor({ timeout: 10_000 });
    const cells = await row.locator("td").allTextContents();
    assert.equal(cells[0], String(pid));
    assert.equal(cells[1], "pg_receivewal");
    assert.equal(cells[2], "127.0.0.1");
    assert.equal(cells[3], "streaming");
    assert.equal(cells[4], "0/C00000");
    assert.match(await page.locator("#store").textContent() ?? "", /00000002000000000000000B/);
    // The summary line ends with the relay's resident memory.
    assert.match(await page.locator("#summary").textContent() ?? "", / · [0-9.]+ MB resident$/);

    // The charts redraw with new points every second.
    const lagChart = page.locator("#lag-chart");
    const throughput = page.locator("#throughput-chart");
    await waitFor(async () => Number(await lagChart.getAttribute("data-points")) > 0, {
      timeoutMs: 10_000,
      message: "the lag chart has no points",
    });
    const first = {
      updated: await lagChart.getAttribute("data-updated"),
      points: Number(await throughput.getAttribute("data-points")),
    };
    await waitFor(async () => (await lagChart.getAttribute("data-updated")) !== first.updated, {
      timeoutMs: 10_000,
      message: "the lag chart did not redraw",
    });
    const points = Number(await throughput.getAttribute("data-points"));
    assert.ok(points > first.points, `throughput points ${first.points} → ${points}`);
    assert.equal(await lagChart.locator("path[data-series]").count(), 1);
    assert.match(
      await page.locator("#lag-legend").textContent() ?? "",
      new RegExp(`pg_receivewal \\(${pid}\\)`),
    );

    await Deno.mkdir(ARTIFACTS, { recursive: true });
    const shot = join(ARTIFACTS, "dashboard.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`dashboard screenshot: ${shot}`);
    assert.deepEqual(problems, []);
  } finally {
    await browser.close();
  }
});
