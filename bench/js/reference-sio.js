'use strict';
// The benchmark's Node reference: socket.io 4.8 on Node with every message stored in
// PostgreSQL (pg), measured in the same run as the project's node ("Node socket.io +
// PostgreSQL"). `python3 bench/run.py --transport node` starts it pinned like a node and runs
// the same generator against it.
//
// It speaks just what the generator's Socket.IO clients use on /chat (bench/js/loadgen.js):
//   connect   auth {token, conversation_id}: the HS256 access token is verified (jsonwebtoken,
//             JWT_SECRET); the socket joins the conversation's room and the room is told
//             user_joined {conversation_id, user_id, device_id, total_users, timestamp}, the
//             joiner included (the generator's clients are in once they see their own).
//             Membership is not checked: the tables of users and conversations are the
//             project's, this server has only its own.
//   chat_message {conversation_id, content} with an ack: one INSERT ... RETURNING into its
//             own table (autocommit: committed before the ack), then the ack {ok, message}
//             with the stored row and chat_message {conversation_id, message} to the room's
//             other sockets (the sender has its ack, as the project does it).
//   disconnect user_left {..., total_users} to the room.
// A refused token is a connect error with data {code: 4001, message}, as the project's.
//
// Usage: node reference-sio.js PORT, with DATABASE_URL (a PostgreSQL database of its own,
// where it creates the table `ref_messages`) and JWT_SECRET. GET /readyz answers 200 once the
// table exists.

const http = require('http');
const { Server } = require('socket.io');
const jwt = require('jsonwebtoken');
const { Pool } = require('pg');

const port = Number(process.argv[2]);
const secret = process.env.JWT_SECRET;
if (!port || !secret || !process.env.DATABASE_URL) {
  console.error('usage: DATABASE_URL=postgres://... JWT_SECRET=... node reference-sio.js PORT');
  process.exit(2);
}

const pool = new Pool({ connectionString: process.env.DATABASE_URL, max: 10 });
const INSERT = {
  name: 'ref_insert',
  text: 'INSERT INTO ref_messages (conversation_id, sender_id, content) VALUES ($1, $2, $3) '
    + 'RETURNING id, conversation_id, sender_id, content, message_type, created_at',
};
let ready = false;

const server = http.createServer((req, res) => {
  if (req.url === '/readyz') {
    res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
    res.end(ready ? 'ok\n' : 'starting\n');
    return;
  }
  // socket.io answers its own path before this handler is reached.
  res.writeHead(404);
  res.end();
});
const io = new Server(server, { serveClient: false });
const chat = io.of('/chat');

const now = () => new Date().toISOString();
const roomOf = (conversationId) => `conversation:${conversationId}`;
const sizeOf = (room) => (chat.adapter.rooms.get(room) || { size: 0 }).size;

chat.use((socket, next) => {
  const auth = socket.handshake.auth || {};
  const token = auth.token || socket.handshake.query.token;
  let claims;
  try {
    claims = jwt.verify(String(token || ''), secret, { algorithms: ['HS256'] });
  } catch (err) {
    claims = null;
  }
  const conversationId = Number(auth.conversation_id);
  if (!claims || claims.type !== 'access' || !Number.isInteger(conversationId)) {
    const err = new Error('authentication failed');
    err.data = { code: 4001, message: 'authentication failed' };
    next(err);
    return;
  }
  socket.data.userId = Number(claims.sub);
  socket.data.conversationId = conversationId;
  next();
});

chat.on('connection', (socket) => {
  const { userId, conversationId } = socket.data;
  const room = roomOf(conversationId);
  socket.join(room);
  chat.to(room).emit('user_joined', {
    conversation_id: conversationId, user_id: userId, device_id: null,
    total_users: sizeOf(room), timestamp: now(),
  });

  socket.on('chat_message', async (data, ack) => {
    const reply = typeof ack === 'function' ? ack : () => {};
    if (!data || Number(data.conversation_id) !== conversationId
        || typeof data.content !== 'string' || data.content.length === 0) {
      reply({ ok: false, error: { code: 'bad_request', message: 'conversation_id and content' } });
      return;
    }
    let message;
    try {
      const result = await pool.query({ ...INSERT, values: [conversationId, userId, data.content] });
      message = result.rows[0];
    } catch (err) {
      reply({ ok: false, error: { code: 'storage', message: String(err.message) } });
      return;
    }
    reply({ ok: true, message });
    socket.to(room).emit('chat_message', { conversation_id: conversationId, message });
  });

  socket.on('disconnect', () => {
    chat.to(room).emit('user_left', {
      conversation_id: conversationId, user_id: userId, device_id: null,
      total_users: sizeOf(room), timestamp: now(),
    });
  });
});

async function main() {
  await pool.query(`CREATE TABLE IF NOT EXISTS ref_messages (
    id BIGSERIAL PRIMARY KEY,
    conversation_id INTEGER NOT NULL,
    sender_id INTEGER NOT NULL,
    content TEXT NOT NULL,
    message_type VARCHAR(16) NOT NULL DEFAULT 'text',
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
  )`);
  // The project's messages carry the same index (conversation, id).
  await pool.query('CREATE INDEX IF NOT EXISTS ref_messages_conversation_id '
    + 'ON ref_messages (conversation_id, id)');
  server.listen(port, '127.0.0.1', () => {
    ready = true;
    console.log(`reference-sio: listening on 127.0.0.1:${port}`);
  });
}

function stop() {
  io.close();
  pool.end().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
