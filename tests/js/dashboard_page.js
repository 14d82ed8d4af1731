// What the dashboard's browser scripts share: Debian's Chromium driven by playwright-core,
// a page watched for script errors and CSP violations, and an agent's sign-in at GET /.
"use strict";

const { chromium } = require("playwright-core");

/** How long a script waits for what a page should show. */
const WAIT = 15000;

const CHROMIUM_ARGS = [
  "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
  "--disable-background-networking", "--disable-component-update", "--disable-sync",
];

/** Headless Chromium (CONFIG's `chromium`, else /usr/bin/chromium). */
function launch(config) {
  return chromium.launch({
    executablePath: config.chromium || "/usr/bin/chromium",
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30000,
  });
}

/** Push onto `problems` every console error, page error and CSP violation of `page`
 *  (prefixed with `who`), but console lines matching `ignore`; alerts count too. */
function watch(page, problems, who = "", ignore = null) {
  const prefix = who ? `${who} ` : "";
  page.on("console", (msg) => {
    if (ignore && ignore.test(msg.text())) return;
    if (msg.type() === "error" || /Content Security Policy/i.test(msg.text())) {
      problems.push(`${prefix}console: ${msg.text()}`);
    }
  });
  page.on("pageerror", (err) => problems.push(`${prefix}pageerror: ${err.message}`));
  page.on("dialog", (dialog) => {
    problems.push(`${prefix}dialog: ${dialog.message()}`);
    dialog.dismiss();
  });
  page.setDefaultTimeout(WAIT);
}

/** Sign `agent` ({email, password}) in at BASE_URL/ and wait until its socket is connected. */
async function signIn(page, baseUrl, agent) {
  await page.goto(`${baseUrl}/`, { waitUntil: "load" });
  await page.fill("#login-email", agent.email);
  await page.fill("#login-password", agent.password);
  await page.click("#login-submit");
  await page.waitForSelector("#app:not([hidden])");
  await page.waitForSelector('#connection-state[data-state="connected"]');
}

module.exports = { WAIT, launch, watch, signIn };
