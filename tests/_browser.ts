/**
 * Debian's Chromium, headless, for the tests that look at the dashboard as a person would.
 *
 * @module
 */

import { type Browser, chromium } from "npm:playwright-core@1";

const CHROMIUM = "/usr/bin/chromium";

/**
 * Starts headless Chromium, or fails saying how to install it: a browser test never skips, and
 * never downloads a browser of its own.
 */
export async function launchChromium(): Promise<Browser> {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    throw new Error(`${CHROMIUM} is missing: install it with apt-get install -y chromium`);
  }
  return await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--no-first-run",
    ],
  });
}
