// What the official socket.io-client sees of refused connections.
// Usage: node socketio_refusals.js BASE_URL CASES_JSON
// CASES_JSON is a list of {namespace, auth?, query?, transports}; each case connects once
// (no reconnection) and the script prints one JSON list, a result per case in order:
// {message, data} from its connect_error (err.message, err.data), or {connected: true}.
"use strict";

const { io } = require("socket.io-client");

const [baseUrl, casesJson] = process.argv.slice(2);
const cases = JSON.parse(casesJson);

function attempt({ namespace, auth, query, transports }) {
  return new Promise((resolve) => {
    const socket = io(`${baseUrl}${namespace}`, {
      auth: auth || {}, query: query || {}, transports, reconnection: false,
      forceNew: true, timeout: 10000,
    });
    socket.on("connect", () => {
      socket.disconnect();
      resolve({ connected: true });
    });
    socket.on("connect_error", (err) => {
      socket.close();
      resolve({ message: err.message, data: err.data === undefined ? null : err.data });
    });
  });
}

(async () => {
  const timer = setTimeout(() => {
    console.error("timed out");
    process.exit(1);
  }, 50000);
  const results = [];
  for (const each of cases) results.push(await attempt(each));
  clearTimeout(timer);
  console.log(JSON.stringify(results));
})();
