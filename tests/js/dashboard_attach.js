// An agent attaches an image with the dashboard's Attach button in headless Chromium
// (Debian's /usr/bin/chromium, driven by playwright-core). Usage:
//   node dashboard_attach.js BASE_URL CONFIG_JSON
// CONFIG_JSON: {chromium, conversation_id, agent: {email, password}, png_base64}
// Prints one JSON document (what the page showed) as its last line; exits 1 on a failed wait.
"use strict";

const { launch, signIn, watch } = require("./dashboard_page");

const [baseUrl, configJson] = process.argv.slice(2);
const config = JSON.parse(configJson);
const cid = config.conversation_id;
let step = "start";
const problems = [];

async function main() {
  const browser = await launch(config);
  const result = {};
  try {
    const page = await (await browser.newContext()).newPage();
    watch(page, problems);

    step = "login";
    await signIn(page, baseUrl, config.agent);
    step = "open the conversation";
    await page.click(`#conversation-list li[data-conversation-id="${cid}"]`);
    await page.waitForSelector(`#chat-view[data-conversation-id="${cid}"][data-joined="true"]`);

    step = "attach an image";
    const chooser = page.waitForEvent("filechooser");
    await page.click("#composer-attach");
    await (await chooser).setFiles({
      name: "chart.png", mimeType: "image/png", buffer: Buffer.from(config.png_base64, "base64"),
    });
    const item = page.locator("#messages li.message[data-message-id]", { hasText: "chart.png" });
    await item.waitFor();
    result.messageId = Number(await item.getAttribute("data-message-id"));
    result.linkText = await item.locator(".attachment a.file-link").textContent();
    result.linkHref = await item.locator(".attachment a.file-link").getAttribute("href");
    step = "the thumbnail loads";
    await page.waitForFunction(
      (id) => {
        const img = document.querySelector(`li[data-message-id="${id}"] .attachment img`);
        return img && img.complete && img.naturalWidth > 0;
      }, result.messageId);
    result.thumbnailWidth = await item.locator(".attachment img").evaluate((img) => img.naturalWidth);

    step = "a refused file says why";
    const refused = page.waitForEvent("filechooser");
    await page.click("#composer-attach");
    await (await refused).setFiles({
      name: "blob.bin", mimeType: "application/octet-stream", buffer: Buffer.from([0, 1, 2, 3]),
    });
    await page.waitForSelector("#chat-error:not([hidden])");
    result.refusal = await page.textContent("#chat-error");
    // The refused upload is a 415 the page reports itself, not an error of the page.
    result.problems = problems.filter((p) => !/status of 415/.test(p));
  } finally {
    await browser.close();
  }
  return result;
}

main().then(
  (result) => { console.log(JSON.stringify(result)); process.exit(0); },
  (err) => {
    console.error(`failed at step "${step}": ${err.stack || err}`);
    if (problems.length) console.error(problems.join("\n"));
    process.exit(1);
  },
);
