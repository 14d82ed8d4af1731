// Harness for running the seeds' JavaScript examples under node: `ws` as the browser's
// WebSocket, console output recorded, and one JSON line printed at the end.
'use strict';

global.WebSocket = require('ws');

const logs = [];
for (const level of ['log', 'error']) {
  console[level] = (...args) => {
    logs.push({ level, args: JSON.parse(JSON.stringify(args)) });
  };
}

// The line is written whole before the exit: a pipe takes 64 KiB at once, and exiting
// right after a longer write cut it short.
let printed = false;
function print(document) {
  if (printed) return;
  printed = true;
  process.stdout.write(`${JSON.stringify(document)}\n`, () => process.exit(0));
}

function finish(result) {
  print({ ...result, logs });
}

function fail(reason) {
  print({ error: reason, logs });
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
