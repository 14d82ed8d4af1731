// Binary attachments with the official socket.io-client, against the protocol suite's app
// (tests/support/conformance_app.py: `message` echoed as `message-back`, `message-with-ack`
// acknowledged with its arguments).
// Usage: node socketio_binary.js BASE_URL TRANSPORT
// Prints one JSON document: what came back, each Buffer as {buffer: base64}.
"use strict";

const { io } = require("socket.io-client");

const [baseUrl, transport] = process.argv.slice(2);
const timer = setTimeout(() => {
  console.error("timed out");
  process.exit(1);
}, 20000);

const encode = (value) => {
  if (Buffer.isBuffer(value) || value instanceof ArrayBuffer) {
    return { buffer: Buffer.from(value).toString("base64") };
  }
  if (Array.isArray(value)) return value.map(encode);
  if (value && typeof value === "object") {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, encode(v)]));
  }
  return value;
};

const socket = io(baseUrl, { transports: [transport], reconnection: false });
socket.on("connect_error", (err) => {
  console.error(`connect_error: ${err.message}`);
  process.exit(1);
});
socket.on("connect", async () => {
  const blob = Buffer.from([...Array(256).keys()]);
  const nested = { name: "photo", parts: [Buffer.from([0, 1]), { raw: Buffer.from("xyz") }] };
  const back = new Promise((resolve) => socket.once("message-back", (...args) => resolve(args)));
  socket.emit("message", blob, "text", nested);
  const echoed = await back;
  const acked = await new Promise((resolve) => socket.emit(
    "message-with-ack", Buffer.from([255, 255, 255]), 1, nested, (...args) => resolve(args)));
  clearTimeout(timer);
  console.log(JSON.stringify({ echoed: encode(echoed), acked: encode(acked),
                               transport: socket.io.engine.transport.name }));
  socket.disconnect();
});
