// Harness for running the seeds' JavaScript examples under node: `ws` as the browser's
// WebSocket, console output recorded, and one JSON line printed at the end.
'use strict';

global.WebSocket = require('ws');

const logs = [];
const original = { log: console.log, error: console.error };
for (const level of ['log', 'error']) {
  console[level] = (...args) => {
    logs.push({ level, args: JSON.parse(JSON.stringify(args)) });
  };
}

function finish(result) {
  original.log(JSON.stringify({ ...result, logs }));
  process.exit(0);
}

function fail(reason) {
  original.log(JSON.stringify({ error: reason, logs }));
  process.exit(0);
}

setTimeout(() => fail('timeout'), Number(process.env.SEED_TIMEOUT_MS || 15000));

// Waits until `check()` is true (polled), then calls `then()`.
function when(check, then) {
  const timer = setInterval(() => {
    if (check()) {
      clearInterval(timer);
      then();
    }
  }, 10);
}

module.exports = { logs, finish, fail, when };
