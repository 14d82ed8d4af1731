// The official socket.io-client, reconnecting through a node's goodbye.
// Usage: node socketio_retry.js BASE_URL TOKEN TRANSPORT
// Connects to /conversations over TRANSPORT only, reconnection on with a short delay, and
// prints one line per step: "connected" (the first connect), then for each failed attempt
// after the disconnect "error <err.message>", and "reconnected" once connected again (then
// exits 0). Exits 1 when the client stops trying (its socket no longer active), naming why.
"use strict";

const { io } = require("socket.io-client");

const [baseUrl, token, transport] = process.argv.slice(2);

const socket = io(`${baseUrl}/conversations`, {
  auth: { token },
  transports: [transport],
  reconnectionDelay: 100,
  reconnectionDelayMax: 300,
  forceNew: true,
});
let connects = 0;
let lastError = null;

socket.on("connect", () => {
  connects += 1;
  console.log(connects === 1 ? "connected" : "reconnected");
  if (connects > 1) {
    socket.close();
    process.exit(0);
  }
});

socket.on("connect_error", (err) => {
  lastError = err;
  console.log(`error ${err.message}`);
  // A refusal of the namespace itself ends socket.io-client's reconnecting (the socket is
  // no longer active): say so, as a client would be left.
  setTimeout(() => {
    if (!socket.active) {
      console.error(`gave up after ${lastError.message} ${JSON.stringify(lastError.data)}`);
      process.exit(1);
    }
  }, 0);
});

setTimeout(() => {
  console.error("timed out");
  process.exit(1);
}, 60000);
