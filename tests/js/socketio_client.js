// A browser-style client: the official socket.io-client against /chat.
// Usage: node socketio_client.js BASE_URL TOKEN CONVERSATION_ID
// Connects with auth {token, conversation_id} (long-polling first, then the websocket upgrade,
// as browsers do), waits for its own user_joined and for a chat_message from someone else,
// sends one with an ack, and prints one JSON document: {joined, received, ack, transport}.
"use strict";

const { io } = require("socket.io-client");

const [baseUrl, token, conversationId] = process.argv.slice(2);
const userId = JSON.parse(Buffer.from(token.split(".")[1], "base64url").toString()).sub;

const fail = (why) => {
  console.error(why);
  process.exit(1);
};
const timer = setTimeout(() => fail("timed out"), 20000);

const socket = io(`${baseUrl}/chat`, {
  auth: { token, conversation_id: Number(conversationId) },
  reconnection: false,
});
const result = {};

socket.on("connect_error", (err) => fail(`connect_error: ${JSON.stringify(err.data)}`));

socket.on("user_joined", (event) => {
  if (String(event.user_id) === userId) {
    result.joined = event;
    console.log("joined"); // the Python side sends its message now
  }
});

socket.on("chat_message", (event) => {
  if (result.received) return;
  result.received = event;
  socket.emit(
    "chat_message",
    { conversation_id: Number(conversationId), content: "hello from node", client_msg_id: "js-1" },
    (ack) => {
      result.ack = ack;
      result.transport = socket.io.engine.transport.name;
      clearTimeout(timer);
      console.log(JSON.stringify(result));
      socket.disconnect();
    },
  );
});
