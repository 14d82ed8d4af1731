// What the official socket.io-client sees of a node shutting down.
// Usage: node socketio_shutdown.js BASE_URL TOKEN [TRANSPORT]
// Connects to /conversations over TRANSPORT only (websocket, as the mobile SDKs do, unless
// "polling" is given), reconnection on,
// prints "connected" (the Python side then stops the node), and once the client has lost
// the node and tried to connect again prints one JSON document: {packets, engineClose,
// reason, reconnecting}: the Engine.IO packet types received after the connect, the reason
// the Engine.IO socket gave for closing, the reason of the Socket.IO disconnect, and whether
// the manager began reconnecting on its own.
"use strict";

const { io } = require("socket.io-client");

const [baseUrl, token, transport = "websocket"] = process.argv.slice(2);

const fail = (why) => {
  console.error(why);
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out"), 40000);

const socket = io(`${baseUrl}/conversations`, {
  auth: { token },
  transports: [transport],
  reconnectionDelay: 100,
  reconnectionDelayMax: 200,
  forceNew: true,
});
const result = { packets: [], engineClose: null, reason: null, reconnecting: false };

socket.once("connect", () => {
  const engine = socket.io.engine;
  engine.on("packet", (packet) => result.packets.push(packet.type));
  engine.on("close", (reason) => {
    result.engineClose = reason;
  });
  console.log("connected");
});

socket.on("connect_error", (err) => {
  if (result.reason === null) fail(`connect_error: ${err.message}`);
});

socket.on("disconnect", (reason) => {
  result.reason = reason;
});

socket.io.on("reconnect_attempt", () => {
  result.reconnecting = true;
  clearTimeout(timer);
  console.log(JSON.stringify(result));
  socket.close();
  process.exit(0);
});
