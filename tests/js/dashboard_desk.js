// Two agents use the dashboard's support desk at GET / in headless Chromium (Debian's
// /usr/bin/chromium, driven by playwright-core). Usage:
//   node dashboard_desk.js BASE_URL CONFIG_JSON
// CONFIG_JSON: {chromium, agent1: {email, password, id}, agent2: {email, password, id},
//               queued: [conversation ids, in the queue's expected order], user_id}
// Prints one JSON document (what the pages showed) as its last line; exits 1 on a failed wait.
"use strict";

const { launch, signIn, watch } = require("./dashboard_page");

const [baseUrl, configJson] = process.argv.slice(2);
const config = JSON.parse(configJson);

let step = "start";
const problems = [];   // console errors, page errors, CSP violations

function watchPage(page, who) {
  // A refused desk call is an expected 4xx the page shows; the browser logs it as an error.
  watch(page, problems, who, /status of 4\d\d/);
}

async function login(page, agent) {
  step = `login ${agent.email}`;
  await signIn(page, baseUrl, agent);
}

const queued = (id) => `#queue-list li[data-conversation-id="${id}"]`;

async function queueOrder(page) {
  const ids = await page.$$eval("#queue-list li.conversation",
    (items) => items.map((li) => Number(li.dataset.conversationId)));
  return ids.filter((id) => config.queued.includes(id));
}

async function open(page, cid) {
  await page.click(`#conversation-list li[data-conversation-id="${cid}"]`);
  await page.waitForSelector(`#chat-view[data-conversation-id="${cid}"][data-joined="true"]`);
  await page.waitForSelector("#desk:not([hidden])");
}

async function main() {
  const browser = await launch(config);
  const result = {};
  const [first] = config.queued;
  const a1 = config.agent1.id;
  const a2 = config.agent2.id;
  try {
    const page1 = await (await browser.newContext()).newPage();
    const page2 = await (await browser.newContext()).newPage();
    watchPage(page1, "agent1");
    watchPage(page2, "agent2");
    await login(page1, config.agent1);
    await login(page2, config.agent2);

    step = "the queue, in its order";
    for (const id of config.queued) await page1.waitForSelector(queued(id));
    result.queueOrder = await queueOrder(page1);
    result.priorityShown = await page1.textContent(`${queued(first)} .priority`);

    step = "agent 1 takes the first: it leaves both queues";
    await page2.waitForSelector(queued(first));
    await page1.click(`${queued(first)} button.take`);
    await page1.waitForSelector(queued(first), { state: "detached" });
    await page2.waitForSelector(queued(first), { state: "detached" });
    result.queueAfterTake = await queueOrder(page2);

    step = "both open it: assigned to agent 1";
    await open(page1, first);
    await page1.waitForSelector(`#desk[data-assigned-agent-id="${a1}"]`);
    result.assignee1 = await page1.textContent("#chat-assignee");
    await open(page2, first);
    await page2.waitForSelector(`#desk[data-assigned-agent-id="${a1}"]`);
    result.assignee2 = await page2.textContent("#chat-assignee");

    step = "agent 1 transfers it to agent 2: agent 2's page follows live";
    await page1.fill("#desk-transfer-id", String(a2));
    await page1.click("#desk-transfer");
    await page2.waitForSelector(`#desk[data-assigned-agent-id="${a2}"]`);
    result.transferred2 = await page2.textContent("#chat-assignee");
    await page1.waitForSelector(`#desk[data-assigned-agent-id="${a2}"]`);
    result.transferred1 = await page1.textContent("#chat-assignee");

    step = "agent 2 sets a status: agent 1's page follows live";
    await page2.selectOption("#desk-status", "support_active");
    await page1.waitForSelector('#desk[data-status="support_active"]');
    await page1.waitForSelector(
      `#conversation-list li[data-conversation-id="${first}"][data-status="support_active"]`);
    result.status1 = await page1.inputValue("#desk-status");
    result.chatStatus1 = await page1.textContent("#chat-status");

    step = "agent 2 unassigns: back in agent 1's queue";
    await page2.click("#desk-unassign");
    await page1.waitForSelector(queued(first));
    await page1.waitForSelector('#desk[data-assigned-agent-id=""]');
    result.unassigned1 = await page1.textContent("#chat-assignee");
    result.queueAfterUnassign = await queueOrder(page1);

    step = "a transfer to a user who is no agent is refused, and said so";
    await page1.fill("#desk-transfer-id", String(config.user_id));
    await page1.click("#desk-transfer");
    await page1.waitForSelector("#desk-error:not([hidden])");
    result.refusal = await page1.textContent("#desk-error");
    result.assigneeAfterRefusal = await page1.getAttribute("#desk", "data-assigned-agent-id");

    step = "agent 1 closes it: agent 2 can no longer write; it leaves the queue";
    await page1.selectOption("#desk-status", "closed");
    await page2.waitForSelector("#composer-input[disabled]");
    await page2.waitForSelector(queued(first), { state: "detached" });
    result.closedStatus2 = await page2.inputValue("#desk-status");
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
