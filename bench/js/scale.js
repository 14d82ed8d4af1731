'use strict';
// What the scale scenarios (idle-100k, big-room, storm) share: lean clients of both transports
// on ws (raw /ws/chat/{id}/, and Engine.IO v4 / Socket.IO v5 frames for /chat, senders
// included), opened from a chosen loopback source address, resumable from a position
// (CONTRACT §9); a ledger of every message sent and of who received it; a connection pool.
//
// Message contents are loadgen.js's: `B{sender}.{seq}.{send time}|xxx…`, so a receiver knows a
// message, and its latency on this process's clock, from the content alone.

const fs = require('fs');
const { performance } = require('perf_hooks');
const WebSocket = require('ws');

const now = () => performance.now();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const B = 66; // 'B'
// This run's mark on its client_msg_ids: a server keeps them, and a run on the same database
// must not be taken for a retry of an earlier one's.
const RUN = require('crypto').randomBytes(6).toString('hex');

// The source address of the i-th client: loopback addresses from 127.0.0.2 up, `perAddress`
// clients each (an address gives ~28,000 ephemeral ports; 127.0.0.1 is left to everything else).
function sourceAddress(i, perAddress) {
  const n = 2 + Math.floor(i / perAddress);
  return `127.0.${Math.floor(n / 256)}.${n % 256}`;
}

// Source ports, handed out in turn per source address. A connect from a chosen address with
// port 0 makes the kernel's bind() search that address's ports for a free one: its cost grows
// with the connections already open (9,000 connects from one address took 6.9 s of kernel
// CPU, 18.8 s again after a restart, against 0.5 s with ports chosen here), and in a storm
// that search, not the node, set the pace. Ports below the ephemeral range (32768 up) are
// never handed out by the kernel to others; one in use is skipped (EADDRINUSE: next port).
const PORT_FIRST = 10000;
const PORT_END = 32768;
const nextPorts = new Map();
function sourcePort(address) {
  const port = nextPorts.get(address) || PORT_FIRST;
  nextPorts.set(address, port + 1 < PORT_END ? port + 1 : PORT_FIRST);
  return port;
}

// The benchmark content of a chat_message frame, found without decoding it.
function contentOf(text) {
  const at = text.indexOf('"content":"B');
  return at < 0 ? null : text.slice(at + 11, text.indexOf('"', at + 11));
}

// The top-level `position` of a logged event's frame (the last one in the text: the nested
// message object has none), or null.
function positionOf(text) {
  const at = text.lastIndexOf('"position":');
  if (at < 0) return null;
  const value = parseInt(text.slice(at + 11, at + 32), 10);
  return Number.isFinite(value) ? value : null;
}

// Peak resident memory of this process (VmHWM), in KiB.
function peakRssKb() {
  const status = fs.readFileSync('/proc/self/status', 'utf8');
  const row = status.split('\n').find((r) => r.startsWith('VmHWM:'));
  return row ? parseInt(row.split(/\s+/)[1], 10) : null;
}

const PRESENCE = ['user_joined', 'user_left', 'user_status', 'presence_diff'];

// One lean client. `spec`: {user_id, token, conversation_id, pos, node, index}; `opts`:
// {transport, url (the node's http base), localAddress, resume (join through `since`),
//  epoch, on: {ready(c, info), message(c, content, position, text), replay(c, content,
//  position), presence(c, name, text), close(c, code, reason), other(c, text)}}.
class LeanClient {
  constructor(spec, opts) {
    this.c = spec; // the scenario's client: what the handlers are given
    this.opts = opts;
    this.ws = null;
    this.up = false; // ready: joined (raw: recent_messages came; Socket.IO: joined)
    this.position = 0; // the last position seen in this conversation
    this.epoch = opts.epoch || null;
    this.acks = new Map();
    this.nextAck = 1;
    this.connects = 0; // a resume (since) from the second connect on
  }

  connect() {
    const { transport, url, localAddress } = this.opts;
    const base = url.replace(/^http/, 'ws');
    this.resuming = this.opts.resume && this.connects > 0;
    this.connects += 1;
    let path;
    if (transport === 'raw') {
      path = `/ws/chat/${this.c.conversation_id}/?token=${this.c.token}`;
      if (this.resuming) {
        path += `&since=${this.position}`;
        if (this.epoch) path += `&epoch=${encodeURIComponent(this.epoch)}`;
      }
    } else {
      path = '/socket.io/?EIO=4&transport=websocket';
    }
    const options = { perMessageDeflate: false, handshakeTimeout: 120000 };
    if (localAddress) {
      options.localAddress = localAddress;
      options.localPort = sourcePort(localAddress);
    }
    const ws = new WebSocket(`${base}${path}`, options);
    this.ws = ws;
    this.up = false;
    let portTaken = false;
    ws.on('error', (err) => {
      this.lastError = String(err && err.message);
      portTaken = Boolean(err && err.code === 'EADDRINUSE');
    });
    ws.on('close', (code, reason) => {
      if (this.ws !== ws) return;
      this.up = false;
      this.ws = null;
      if (portTaken) { // never reached the node: the same connect again from the next port
        this.connects -= 1;
        this.connect();
        return;
      }
      for (const callback of this.acks.values()) callback(null);
      this.acks.clear();
      this.opts.on.close(this.c, code, `${reason || ''} ${this.lastError || ''}`.trim());
    });
    ws.on('message', (data) => {
      const text = data.toString();
      if (transport === 'raw') this.onRaw(text);
      else this.onSio(text);
    });
  }

  seen(position) {
    if (position !== null && position > this.position) this.position = position;
  }

  onRaw(text) {
    const on = this.opts.on;
    if (text.startsWith('{"type":"chat_message"')) {
      const position = positionOf(text);
      this.seen(position);
      on.message(this.c, contentOf(text), position, text);
      return;
    }
    if (text.startsWith('{"type":"recent_messages"')) {
      this.up = true;
      on.ready(this.c, {});
      return;
    }
    if (text.startsWith('{"type":"connection_established"')) return;
    for (const name of PRESENCE) {
      if (text.startsWith(`{"type":"${name}"`)) {
        on.presence(this.c, name, text);
        return;
      }
    }
    on.other(this.c, text);
  }

  onSio(text) {
    const on = this.opts.on;
    if (text.startsWith('42/chat,["chat_message"')) {
      const position = positionOf(text);
      this.seen(position);
      on.message(this.c, contentOf(text), position, text);
      return;
    }
    if (text === '2') { // Engine.IO ping
      this.ws.send('3');
      return;
    }
    if (text.startsWith('43/chat,')) { // an ack: 43/chat,ID[payload]
      const bracket = text.indexOf('[');
      const id = +text.slice(8, bracket);
      const callback = this.acks.get(id);
      if (callback) {
        this.acks.delete(id);
        callback(JSON.parse(text.slice(bracket))[0]);
      }
      return;
    }
    if (text.startsWith('0{')) { // Engine.IO open: connect to /chat
      const auth = { token: this.c.token };
      if (!this.opts.resume) auth.conversation_id = this.c.conversation_id;
      this.ws.send(`40/chat,${JSON.stringify(auth)}`);
      return;
    }
    if (text.startsWith('40/chat,')) {
      if (this.opts.resume) this.join();
      return; // with conversation_id in auth: ready once told of one's own join
    }
    if (text.startsWith('44/chat,')) {
      this.opts.on.other(this.c, text);
      this.ws.close();
      return;
    }
    if (text.startsWith('42/chat,["')) {
      const name = text.slice(10, text.indexOf('"', 10));
      if (PRESENCE.includes(name)) {
        on.presence(this.c, name, text);
        if (!this.opts.resume && !this.up) {
          // Joined at connect: one's own user_joined, or a large room's coalesced diff.
          const mine = name === 'presence_diff'
            || (name === 'user_joined' && new RegExp(`"user_id":${this.c.user_id}[,}]`).test(text));
          if (mine) {
            this.up = true;
            on.ready(this.c, {});
          }
        }
        return;
      }
    }
    on.other(this.c, text);
  }

  // Socket.IO: join the conversation; again from the last position seen, where the ack holds
  // what was missed (the first join's ack tells where the log stands).
  join() {
    const data = { conversation_id: this.c.conversation_id };
    if (this.resuming) {
      data.since = { position: this.position };
      if (this.epoch) data.since.epoch = this.epoch;
    }
    this.emit('join', data, (ack) => {
      if (!ack || !ack.ok) {
        this.opts.on.other(this.c, `join refused: ${JSON.stringify(ack).slice(0, 200)}`);
        if (this.ws) this.ws.close();
        return;
      }
      if (ack.epoch) this.epoch = ack.epoch;
      this.up = true;
      this.opts.on.ready(this.c, { ack });
      for (const event of ack.events || []) {
        if (event.event !== 'chat_message') continue;
        this.seen(event.position);
        this.opts.on.replay(this.c, event.message.content, event.position);
      }
      this.seen(ack.position === undefined ? null : ack.position);
    });
  }

  emit(name, data, callback) {
    const id = this.nextAck;
    this.nextAck += 1;
    this.acks.set(id, callback);
    this.ws.send(`42/chat,${id}${JSON.stringify([name, data])}`);
  }

  // Send a message; `done(ok, detail)` on Socket.IO's ack (raw: the echo confirms, see the
  // ledger; done is not called). False when the connection is not up.
  send(content, clientMsgId, done) {
    if (!this.up || !this.ws || this.ws.readyState !== WebSocket.OPEN) return false;
    if (this.opts.transport === 'raw') {
      const frame = { type: 'chat_message', content };
      if (clientMsgId) frame.client_msg_id = clientMsgId;
      this.ws.send(JSON.stringify(frame));
      return true;
    }
    const data = { conversation_id: this.c.conversation_id, content };
    if (clientMsgId) data.client_msg_id = clientMsgId;
    this.emit('chat_message', data, (ack) => {
      if (ack && ack.ok) done(true);
      else done(false, ack === null ? 'connection closed' : JSON.stringify(ack).slice(0, 200));
    });
    return true;
  }

  close() {
    const ws = this.ws;
    this.ws = null;
    this.up = false;
    if (ws) ws.terminate();
  }
}

// Every message sent and who got it. Receivers are (conversation, pos); raw routes echo a
// message to its sender (the echo confirms it there), Socket.IO senders get an ack instead.
class Ledger {
  constructor(clients, echo) {
    this.echo = echo;
    this.members = new Map();
    for (const c of clients) {
      this.members.set(c.conversation_id, (this.members.get(c.conversation_id) || 0) + 1);
    }
    this.byRoom = new Map(); // conversation id -> records, in send order
    this.sent = new Map(); // sender index -> records by sequence number
    this.stats = { sent: 0, confirmed: 0, failed: 0, deliveries: 0, duplicates: 0,
      duplicates_to_senders: 0, unknown: 0 };
    this.onDelivery = null; // (receiver, record, latency ms, receive time, first time)
    this.onConfirm = null; // (record): a message acknowledged (raw: echoed to its sender)
  }

  create(sender, t = now(), bytes = 64) {
    const list = this.sent.get(sender.index) || [];
    this.sent.set(sender.index, list);
    const seq = list.length;
    const head = `B${sender.index}.${seq}.${t.toFixed(3)}|`;
    const content = head + 'x'.repeat(Math.max(0, bytes - head.length));
    const record = { t, seq, content, clientMsgId: `bench-${RUN}-${sender.index}-${seq}`,
      got: new Uint8Array(this.members.get(sender.conversation_id)), confirmed: false,
      confirmedAt: null, failed: false, pos: sender.pos, conversation_id: sender.conversation_id };
    list.push(record);
    if (!this.byRoom.has(sender.conversation_id)) this.byRoom.set(sender.conversation_id, []);
    this.byRoom.get(sender.conversation_id).push(record);
    this.stats.sent += 1;
    return record;
  }

  lookup(content) {
    if (content === null || content.charCodeAt(0) !== B) return undefined;
    const d1 = content.indexOf('.');
    const d2 = content.indexOf('.', d1 + 1);
    const list = this.sent.get(+content.slice(1, d1));
    return list && list[+content.slice(d1 + 1, d2)];
  }

  // A delivery to `receiver`; returns the record (undefined for an unknown content).
  deliver(receiver, content, t = now()) {
    let record = this.lookup(content);
    this.stats.deliveries += 1;
    // Only this run's messages: an earlier run on the same database reused the numbers.
    if (record !== undefined && record.content !== content) record = undefined;
    if (record === undefined) {
      this.stats.unknown += 1;
      return undefined;
    }
    const first = record.got[receiver.pos]++ === 0;
    if (!first) {
      this.stats.duplicates += 1;
      // A sender's own message twice: a retried client_msg_id is echoed to its sender again.
      if (record.pos === receiver.pos) this.stats.duplicates_to_senders += 1;
    }
    if (this.onDelivery) this.onDelivery(receiver, record, t - record.t, t, first);
    if (this.echo && record.pos === receiver.pos && first) this.confirm(record, t);
    return record;
  }

  confirm(record, t = now()) {
    if (record.confirmed) return;
    record.confirmed = true;
    record.confirmedAt = t;
    this.stats.confirmed += 1;
    if (this.onConfirm) this.onConfirm(record);
  }

  // Acknowledged messages some receiver lacks (lost), messages never acknowledged, and the
  // receivers that lack at least one acknowledged message.
  missing() {
    let lost = 0;
    let unconfirmed = 0;
    let undelivered = 0;
    const starved = new Set();
    for (const records of this.byRoom.values()) {
      for (const record of records) {
        if (record.failed) continue;
        let absent = 0;
        for (let pos = 0; pos < record.got.length; pos += 1) {
          if (!this.echo && pos === record.pos) continue;
          if (record.got[pos] === 0) {
            absent += 1;
            if (record.confirmed) starved.add(`${record.conversation_id}.${pos}`);
          }
        }
        if (record.confirmed) lost += absent;
        else {
          unconfirmed += 1;
          undelivered += absent;
        }
      }
    }
    return { lost, unconfirmed, undelivered, members_missing_any: starved.size };
  }

  // Wait (bounded) until nothing acknowledged is missing and nothing is unacknowledged, or
  // until deliveries have stopped moving for `quietMs` after `floorMs`.
  async drain(floorMs = 3000, ceilingMs = 120000, quietMs = 3000) {
    const started = now();
    let state = this.missing();
    let seen = this.stats.deliveries;
    let movedAt = now();
    while ((state.lost > 0 || state.unconfirmed > 0) && now() - started < ceilingMs) {
      if (now() - started >= floorMs && now() - movedAt > quietMs) break;
      await sleep(250);
      if (this.stats.deliveries !== seen) {
        seen = this.stats.deliveries;
        movedAt = now();
      }
      state = this.missing();
    }
    return { ...state, drain_s: (now() - started) / 1000 };
  }
}

// Open `clients` with at most `concurrency` handshakes at once; `open(client)` returns a
// promise that settles when that client is ready. Reports progress every 5 s.
async function connectMany(clients, concurrency, open, progress) {
  let next = 0;
  let done = 0;
  const started = now();
  let lastReport = started;
  async function worker() {
    while (next < clients.length) {
      const client = clients[next];
      next += 1;
      await open(client);
      done += 1;
      const t = now();
      if (t - lastReport > 5000) {
        lastReport = t;
        progress(`connected ${done}/${clients.length} (${Math.round(done / ((t - started) / 1000))}/s)`);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, clients.length) }, worker));
  const seconds = (now() - started) / 1000;
  return { seconds, per_second: clients.length / seconds };
}

// Connect `c` (its handlers call c.resolve when ready, c.reject when closed first); fails when
// it is not ready within `ms`, so that a stalled ramp ends with a message instead of waiting.
function readyWithin(c, ms) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      c.resolve = null;
      c.reject = null;
      reject(new Error(`client ${c.index}: not ready ${ms / 1000} s after connecting ` +
        `(socket ${c.conn.ws ? 'open' : 'closed'})`));
    }, ms);
    c.resolve = () => { clearTimeout(timer); resolve(); };
    c.reject = (err) => { clearTimeout(timer); reject(err); };
    c.conn.connect();
  });
}

// A client not ready this long after its connect: the ramp fails.
const READY_MS = 180000;

// Connect `clients` (`cfg.connect_concurrency` handshakes at once), then wait until no presence
// frame has come for a second (at most `cfg.settle_max_s`), so that the joins' presence is
// over before anything is measured; `lastPresenceAt()` is when the last one came. Tells
// bench/run.py `connecting` (with `fields`), `connected` and `settled`; returns the ramp.
async function connectAndSettle(clients, cfg, { line, progress }, lastPresenceAt, fields = {}) {
  line({ event: 'connecting', clients: clients.length, ...fields });
  const ramp = await connectMany(clients, cfg.connect_concurrency || 100, (c) => readyWithin(c, READY_MS), progress);
  line({ event: 'connected', seconds: ramp.seconds, per_second: ramp.per_second });
  const connectedAt = now();
  const deadline = connectedAt + (cfg.settle_max_s || 120) * 1000;
  while (now() < deadline && now() - Math.max(lastPresenceAt(), connectedAt) < 1000) await sleep(100);
  line({ event: 'settled' });
  return ramp;
}

// Percentiles of a list of numbers (sorted here).
function spread(values) {
  if (values.length === 0) return null;
  values.sort((a, b) => a - b);
  const at = (p) => values[Math.min(values.length - 1, Math.max(0, Math.ceil((p / 100) * values.length) - 1))];
  const round = (v) => Math.round(v * 1000) / 1000;
  return { min: round(values[0]), p50: round(at(50)), p99: round(at(99)),
    max: round(values[values.length - 1]), count: values.length };
}

module.exports = {
  LeanClient, Ledger, connectAndSettle, connectMany, readyWithin, sourceAddress, peakRssKb, spread,
  now, sleep,
};
