// An agent searches messages from the dashboard at GET / in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core). Usage:
//   node dashboard_search.js BASE_URL CONFIG_JSON
// CONFIG_JSON: {chromium, agent: {email, password}, word, conversation_id}
// Prints one JSON document (what the page showed) as its last line; exits 1 on a failed wait.
"use strict";

const { launch, signIn, watch } = require("./dashboard_page");

const [baseUrl, configJson] = process.argv.slice(2);
const config = JSON.parse(configJson);
let step = "start";
const problems = [];

async function hits(page) {
  return page.$$eval("#search-results li.search-hit", (items) => items.map((li) => ({
    message_id: Number(li.dataset.messageId),
    conversation_id: Number(li.dataset.conversationId),
    title: li.querySelector(".title").textContent,
    snippet_text: li.querySelector(".snippet").textContent,
    marks: [...li.querySelectorAll(".snippet mark")].map((m) => m.textContent),
    elements: [...li.querySelectorAll(".snippet *")].map((e) => e.tagName),
  })));
}

async function main() {
  const browser = await launch(config);
  const result = {};
  try {
    const page = await (await browser.newContext()).newPage();
    watch(page, problems);

    step = "login";
    await signIn(page, baseUrl, config.agent);
    result.panelHiddenAtFirst = await page.isHidden("#search-panel");

    step = "search: the first page";
    await page.fill("#search-input", config.word);
    await page.press("#search-input", "Enter");
    await page.waitForSelector("#search-results li.search-hit");
    await page.waitForFunction(() => !document.getElementById("search-more").hidden);
    result.firstPage = await hits(page);

    step = "search: more results";
    await page.click("#search-more");
    await page.waitForSelector("#search-more", { state: "hidden" });
    result.allHits = await hits(page);
    result.summary = await page.textContent("#search-summary");

    step = "search: nothing found, then refused text";
    await page.fill("#search-input", `${config.word}absent`);
    await page.press("#search-input", "Enter");
    await page.waitForFunction(() => document.getElementById("search-summary").textContent
      === "No messages found.");
    result.emptyCount = (await hits(page)).length;
    await page.fill("#search-input", "&|!");
    await page.press("#search-input", "Enter");
    await page.waitForFunction(() => document.getElementById("search-summary").textContent
      .startsWith("Search:"));
    result.refusedSummary = await page.textContent("#search-summary");

    step = "search again and open a hit";
    await page.fill("#search-input", config.word);
    await page.press("#search-input", "Enter");
    await page.waitForSelector("#search-results li.search-hit");
    await page.click("#search-results li.search-hit");
    await page.waitForSelector(
      `#chat-view[data-conversation-id="${config.conversation_id}"][data-joined="true"]`);
    result.opened = Number(await page.getAttribute("#chat-view", "data-conversation-id"));

    step = "clearing the box hides the results";
    await page.fill("#search-input", "");
    await page.waitForSelector("#search-panel", { state: "hidden" });
    result.problems = problems;
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
