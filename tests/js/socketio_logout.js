// What the official socket.io-client sees when its session logs out.
// Usage: node socketio_logout.js BASE_URL TOKEN TRANSPORT
// Opens /chat and /conversations over TRANSPORT on one connection, logs out with TOKEN
// (POST /api/v1/auth/logout) once both are connected, and prints one JSON document:
// {disconnects: [{namespace, reason, active}]} once both sockets are disconnected, where
// `active` is whether the client would still reconnect that socket (socket.active, read in
// its disconnect handler).
"use strict";

const { io } = require("socket.io-client");

const [baseUrl, token, transport] = process.argv.slice(2);

const chat = io(`${baseUrl}/chat`, { auth: { token }, transports: [transport], forceNew: true });
const sockets = { "/chat": chat, "/conversations": chat.io.socket("/conversations", { auth: { token } }) };
const disconnects = [];
let connected = 0;

for (const [namespace, socket] of Object.entries(sockets)) {
  socket.on("connect_error", (err) => {
    console.error(`${namespace}: connect_error ${err.message} ${JSON.stringify(err.data)}`);
    process.exit(1);
  });
  socket.on("connect", async () => {
    connected += 1;
    if (connected !== 2) return;
    const response = await fetch(`${baseUrl}/api/v1/auth/logout`, {
      method: "POST", body: "{}",
      headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
    });
    if (response.status !== 200) {
      console.error(`logout: ${response.status} ${await response.text()}`);
      process.exit(1);
    }
  });
  socket.on("disconnect", (reason) => {
    disconnects.push({ namespace, reason, active: socket.active });
    if (disconnects.length === 2) {
      console.log(JSON.stringify({ disconnects }));
      process.exit(0);
    }
  });
}

setTimeout(() => {
  console.error(`timed out: ${JSON.stringify(disconnects)}`);
  process.exit(1);
}, 30000);
