// What the console's browser scenarios share: Debian's Chromium driven by playwright-core
// (no browser download), signing in, screenshots, and checks that fail with what the page
// showed. Run by tools/src/harness/browser.rs with BASE_URL and SCREENSHOT_DIR set.

import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import { chromium } from "playwright-core";

/** The relay under test, e.g. https://localhost:40123. */
export const base = required("BASE_URL");

/** Where screenshots go (target/screenshots by default). */
const screenshots = process.env.SCREENSHOT_DIR || "target/screenshots";

/** The longest one step (a navigation, a wait for an element) may take. */
const STEP_MS = 15_000;

/** An environment variable the scenario cannot run without. */
export function required(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: the scenario needs it (see tools/src/harness/browser.rs)`);
  }
  return value;
}

/**
 * Chromium (/usr/bin/chromium, or CHROMIUM) headless, with a fresh profile (removed by
 * `close()`), on a closed network: nothing but the relay is reached. The test relay's
 * certificate comes from a throw-away CA, so certificate errors are accepted.
 */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "relay-chromium-"));
  // Playwright passes the profile as --user-data-dir itself.
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 60_000,
    ignoreHTTPSErrors: true,
    viewport: { width: 1280, height: 900 },
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  context.setDefaultTimeout(STEP_MS);
  context.setDefaultNavigationTimeout(STEP_MS);
  const page = context.pages()[0] || (await context.newPage());
  const close = async () => {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
  };
  return { context, page, close };
}

/** Signs in at `base` as `user` and waits for the overview. */
export async function login(page, baseUrl, user, password) {
  await page.goto(`${baseUrl}/console/login`);
  await page.fill('input[name="username"]', user);
  await page.fill('input[name="password"]', password);
  await Promise.all([
    page.waitForURL((url) => !url.pathname.startsWith("/console/login")),
    page.click('button[type="submit"]'),
  ]);
}

/** Saves a full-page screenshot as `<SCREENSHOT_DIR>/<name>.png`. */
export async function shot(page, name) {
  mkdirSync(screenshots, { recursive: true });
  const path = join(screenshots, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  console.log(`screenshot ${path}`);
  return path;
}

/** Fails unless the page's text has `wanted`, showing the text it has. */
export async function expectText(page, wanted, what = wanted) {
  const text = await page.innerText("main");
  if (!text.includes(wanted)) {
    throw new Error(`expected ${JSON.stringify(what)} on ${page.url()}; the page says:\n${text}`);
  }
}

/** Fails if the page's text has `unwanted`. */
export async function expectNoText(page, unwanted) {
  const text = await page.innerText("main");
  if (text.includes(unwanted)) {
    throw new Error(`${JSON.stringify(unwanted)} must not be on ${page.url()}; the page says:\n${text}`);
  }
}

/** Runs `scenario(page)` in a fresh browser, closing it whatever happens; exits 1 on failure. */
export async function run(scenario) {
  const { page, close } = await launch();
  try {
    await scenario(page);
    console.log("scenario passed");
  } catch (error) {
    console.error(`scenario failed: ${error.stack || error}`);
    try {
      await shot(page, `failure-${Date.now()}`);
    } catch {
      // The screenshot is a help, not the finding.
    }
    process.exitCode = 1;
  } finally {
    await close();
  }
}
