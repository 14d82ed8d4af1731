// Two agents use the dashboard at GET / in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core; no browser download). Usage:
//   node dashboard_agents.js BASE_URL CONFIG_JSON
// CONFIG_JSON: {chromium, conversation_id, agent1: {email, password, name},
//               agent2: {email, password, name}}
// Prints one JSON document (what the pages showed) as its last line; exits 1 on a failed wait.
"use strict";

const WebSocket = require("ws");
const { launch, signIn, watch } = require("./dashboard_page");

const [baseUrl, configJson] = process.argv.slice(2);
const config = JSON.parse(configJson);
const cid = config.conversation_id;

let step = "start";
const problems = [];   // console errors, page errors, CSP violations

function watchPage(page, who) {
  watch(page, problems, who);
}

async function login(page, agent) {
  step = `login ${agent.email}`;
  await signIn(page, baseUrl, agent);
}

async function openConversation(page) {
  await page.click(`#conversation-list li[data-conversation-id="${cid}"]`);
  await page.waitForSelector(`#chat-view[data-conversation-id="${cid}"][data-joined="true"]`);
}

async function send(page, text) {
  await page.locator("#composer-input").fill(text);
  await page.locator("#composer-input").press("Enter");
  // Acknowledged: stored with an id, no longer pending.
  const item = page.locator("#messages li.message[data-message-id]", { hasText: text });
  await item.waitFor();
  return Number(await item.getAttribute("data-message-id"));
}

async function messageList(page) {
  return page.$$eval("#messages li.message", (items) => items.map((li) => ({
    id: li.dataset.messageId ? Number(li.dataset.messageId) : null,
    pending: li.dataset.pending || null,
    content: li.querySelector(".content").textContent,
    mine: li.dataset.mine === "true",
  })));
}

const messageById = (id) => `#messages li.message[data-message-id="${id}"]`;

async function main() {
  const browser = await launch(config);
  const result = {};
  try {
    // Separate contexts: separate sessionStorage, and agent 2 can go offline alone.
    const context1 = await browser.newContext();
    const context2 = await browser.newContext();
    // Every state agent 1's indicator shows from the page's start (the first connection).
    await context1.addInitScript(() => {
      window.__firstStates = [];
      document.addEventListener("DOMContentLoaded", () => {
        const node = document.getElementById("connection-state");
        window.__firstStates.push(node.dataset.state);
        new MutationObserver(() => window.__firstStates.push(node.dataset.state))
          .observe(node, { attributes: true, attributeFilter: ["data-state"] });
      });
    });
    const page1 = await context1.newPage();
    const page2 = await context2.newPage();
    watchPage(page1, "agent1");
    watchPage(page2, "agent2");

    await login(page1, config.agent1);
    result.firstStates1 = await page1.evaluate(() => window.__firstStates);
    await login(page2, config.agent2);
    result.me1 = await page1.textContent("#me");

    // Every change of agent 2's connection indicator, as it happens.
    await page2.evaluate(() => {
      const node = document.getElementById("connection-state");
      window.__states = [node.dataset.state];
      new MutationObserver(() => {
        const last = window.__states[window.__states.length - 1];
        if (node.dataset.state !== last) window.__states.push(node.dataset.state);
      }).observe(node, { attributes: true, attributeFilter: ["data-state"] });
    });

    // Agent 1 opens the conversation: the latest 50, then an older page over REST.
    step = "agent 1 opens the conversation and pages back";
    await openConversation(page1);
    result.loadOlderShown = await page1.isVisible("#load-older");
    result.firstPageCount = (await messageList(page1)).length;
    await page1.click("#load-older");
    await page1.waitForSelector("#load-older", { state: "hidden" });
    result.afterOlderCount = (await messageList(page1)).length;

    // Agent 1 writes; agent 2, not in the conversation yet, sees its unread count move.
    step = "agent 1 sends the first message; agent 2's unread count";
    const first = await send(page1, "First message from agent one");
    const badge = `#conversation-list li[data-conversation-id="${cid}"] .unread`;
    await page2.waitForSelector(`${badge}[data-count="1"]:not([hidden])`);
    result.unreadBefore = Number(await page2.getAttribute(badge, "data-count"));

    // Agent 2 opens it: history shows the message, and reading it is a receipt on page 1.
    step = "agent 2 opens the conversation; read receipt on page 1";
    await openConversation(page2);
    await page2.waitForSelector(messageById(first));
    await page1.waitForSelector(`${messageById(first)} .receipt[data-status="read"]`);
    result.firstReceipt = await page1.textContent(`${messageById(first)} .receipt`);
    await page2.waitForSelector(`${badge}[data-count="0"]`, { state: "attached" });
    result.unreadAfter = Number(await page2.getAttribute(badge, "data-count"));

    // Typing on page 1 shows on page 2; the message then arrives live.
    step = "typing indicator on page 2";
    await page1.locator("#composer-input").pressSequentially("Live hello", { delay: 20 });
    await page2.waitForSelector("#typing:not([hidden])");
    result.typingText = await page2.textContent("#typing");
    step = "live message on page 2";
    await page1.locator("#composer-input").press("Enter");
    const liveItem = page1.locator("#messages li.message[data-message-id]", { hasText: "Live hello" });
    await liveItem.waitFor();
    const live = Number(await liveItem.getAttribute("data-message-id"));
    await page2.waitForSelector(messageById(live));
    await page2.waitForSelector("#typing", { state: "hidden" });
    await page1.waitForSelector(`${messageById(live)} .receipt[data-status="read"]`);

    // A reaction on page 2 shows on page 1.
    step = "reaction";
    await page2.click(`${messageById(live)} button.react[data-emoji="👍"]`);
    const chip = `${messageById(live)} .reaction[data-emoji="👍"]`;
    await page1.waitForSelector(`${chip}[data-count="1"]`);
    result.reactionText = await page1.textContent(chip);

    // Agent 2 loses the network while agent 1 sends two more; then it comes back.
    step = "agent 2 goes offline";
    await context2.setOffline(true);
    await page2.waitForSelector('#connection-state[data-state="offline"]');
    step = "agent 1 sends while agent 2 is offline";
    const missed1 = await send(page1, "Missed one");
    const missed2 = await send(page1, "Missed two");
    // An edit of a message agent 2 already has: only the event log can bring it back.
    step = "agent 1 edits a message while agent 2 is offline";
    result.editStatus = await page1.evaluate(async ([id, store]) => {
      const tokens = JSON.parse(sessionStorage.getItem(store));
      const response = await fetch(`/api/v1/chat/messages/${id}`, {
        method: "PATCH",
        headers: { Authorization: `Bearer ${tokens.access_token}`, "Content-Type": "application/json" },
        body: JSON.stringify({ content: "Live hello, edited" }),
      });
      return response.status;
    }, [live, "confab.dashboard"]);
    await page1.locator(`${messageById(live)} .content`, { hasText: "Live hello, edited" }).waitFor();
    await page2.waitForTimeout(500);
    result.seenWhileOffline = await page2.$$eval(
      "#messages li.message", (items, ids) => items.filter((li) => ids.includes(Number(li.dataset.messageId))).length,
      [missed1, missed2]);
    step = "agent 2 comes back online and catches up";
    await context2.setOffline(false);
    await page2.waitForSelector('#connection-state[data-state="connected"]');
    await page2.waitForSelector(messageById(missed2));
    await page2.locator(`${messageById(live)} .content`, { hasText: "Live hello, edited" }).waitFor();
    await page2.waitForTimeout(500);   // room for a duplicate to show up, if any would
    result.states2 = await page2.evaluate(() => window.__states);

    // One more live message after the reconnect: the live path works again.
    step = "live message after reconnect";
    const after = await send(page1, "After the reconnect");
    await page2.waitForSelector(messageById(after));

    // A reload keeps the session (tokens in sessionStorage): no second login.
    step = "reload page 1";
    await page1.reload({ waitUntil: "load" });
    await page1.waitForSelector("#app:not([hidden])");
    await page1.waitForSelector('#connection-state[data-state="connected"]');
    result.resumedAfterReload = await page1.isHidden("#login");

    result.ids = { first, live, missed1, missed2, after };
    await openConversation(page1);
    await page1.click("#load-older");
    await page1.waitForSelector("#load-older", { state: "hidden" });
    result.messages1 = await messageList(page1);
    result.messages2 = await messageList(page2);
    result.state1 = await page1.getAttribute("#connection-state", "data-state");

    // A mobile device types in its conversation, then writes: its typing ends with the
    // message (not at the 8 s expiry).
    step = "a device's typing on page 1";
    const device = config.device;
    await page1.click(`#conversation-list li[data-conversation-id="${device.conversation_id}"]`);
    await page1.waitForSelector(
      `#chat-view[data-conversation-id="${device.conversation_id}"][data-joined="true"]`);
    const wsBase = baseUrl.replace(/^http/, "ws");
    const mobile = new WebSocket(
      `${wsBase}/ws/mobile/chat/${device.conversation_id}/?device_id=${device.id}`);
    await new Promise((resolve, reject) => { mobile.on("open", resolve); mobile.on("error", reject); });
    mobile.send(JSON.stringify({ type: "typing_indicator", is_typing: true }));
    await page1.waitForSelector("#typing:not([hidden])");
    mobile.send(JSON.stringify({ type: "chat_message", content: "From the phone" }));
    await page1.locator("#messages li.message", { hasText: "From the phone" }).waitFor();
    result.deviceTypingCleared = await page1.waitForSelector("#typing", { state: "hidden", timeout: 2000 })
      .then(() => true, () => false);
    mobile.close();

    // The node stalls (SIGSTOP) while page 1 sends (in the device's conversation): no ack
    // within the timeout, the message is queued; the node goes on and the page sends it
    // again by itself, with the same id.
    step = "a send while the node stalls";
    process.kill(config.server_pid, "SIGSTOP");
    try {
      await page1.locator("#composer-input").fill("Through a stall");
      await page1.locator("#composer-input").press("Enter");
      await page1.waitForSelector('#messages li.message[data-pending="queued"]', { timeout: 20000 });
    } finally {
      process.kill(config.server_pid, "SIGCONT");
    }
    const stalled = page1.locator("#messages li.message[data-message-id]", { hasText: "Through a stall" });
    result.resentAfterStall = await stalled.waitFor({ timeout: 8000 }).then(() => true, () => false);
    result.stalledCopies = await page1.locator("#messages li.message", { hasText: "Through a stall" }).count();
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
