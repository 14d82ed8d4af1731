'use strict';
// The benchmark's load generator: one Node process that opens every client connection of one
// scenario (official socket.io-client for /chat, or lean receivers on ws: connectSioLean; ws
// for /ws/chat/), sends 64-byte messages stamped with their send time, and counts what each
// client receives.
//
// Usage: node loadgen.js CONFIG.json. The config (written by bench/run.py) names the nodes,
// the transport, the scenario and every client: {user_id, token, conversation_id, pos, node}.
// Talks to the orchestrator with one JSON object per line on stdout:
//   progress {message}            a line for the reader
//   connecting / connected {...}  the ramp (the orchestrator reads server memory and CPU)
//   settled                       presence events of the ramp are over
//   window_start / window_end     the measured window (the orchestrator reads server CPU)
//   hold_end                      idle: the clients have been held connected
// connect: the ramp is the measurement (connect_latency: from opening a client's connection to
// the frame that shows it is in, recent_messages on raw, its own user_joined on Socket.IO).
// join-storm: every client connects at once; the result says when each had been told the room
// holds them all (total_users) and how many presence frames came in all.
//   result {...}                  everything measured; then the process exits
// idle-100k, big-room and storm: see idle100k.js, bigroom.js and storm.js.
// The send timestamp travels in the message content; sender and receivers share this
// process's monotonic clock, so latency is receive time minus send time.

const fs = require('fs');
const { performance, monitorEventLoopDelay } = require('perf_hooks');
const WebSocket = require('ws');
const { io } = require('socket.io-client');

const cfg = JSON.parse(fs.readFileSync(process.argv[2], 'utf8'));
const now = () => performance.now();
const line = (obj) => process.stdout.write(JSON.stringify(obj) + '\n');
const progress = (message) => line({ event: 'progress', message });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

const CONTENT_BYTES = cfg.message_bytes || 64;
const B = 66; // 'B': first character of every benchmark content

// -- latency histogram: 10 µs buckets up to 10 s, exact values beyond --------------------------

class Histogram {
  constructor() {
    this.step = 0.01; // ms
    this.counts = new Uint32Array(1000000);
    this.over = [];
    this.n = 0;
    this.max = 0;
    this.sum = 0;
  }

  add(ms) {
    if (ms < 0) ms = 0;
    this.n += 1;
    this.sum += ms;
    if (ms > this.max) this.max = ms;
    const bucket = Math.floor(ms / this.step);
    if (bucket < this.counts.length) this.counts[bucket] += 1;
    else this.over.push(ms);
  }

  percentile(p) {
    if (this.n === 0) return null;
    const rank = Math.max(1, Math.ceil((p / 100) * this.n));
    let seen = 0;
    for (let i = 0; i < this.counts.length; i += 1) {
      seen += this.counts[i];
      if (seen >= rank) return Math.min((i + 1) * this.step, this.max);
    }
    this.over.sort((a, b) => a - b);
    return this.over[rank - seen - 1];
  }

  summary() {
    const round = (v) => (v === null ? null : Math.round(v * 1000) / 1000);
    return {
      count: this.n,
      mean_ms: this.n ? round(this.sum / this.n) : null,
      p50_ms: round(this.percentile(50)),
      p90_ms: round(this.percentile(90)),
      p99_ms: round(this.percentile(99)),
      max_ms: this.n ? round(this.max) : null,
    };
  }
}

// -- state ----------------------------------------------------------------------------------

const clients = cfg.clients.map((spec, index) => ({ ...spec, index, ready: false, conn: null }));
const members = new Map(); // conversation id -> number of clients in it (positions 0..n-1)
for (const c of clients) members.set(c.conversation_id, (members.get(c.conversation_id) || 0) + 1);
// Raw routes echo a message to its sender; Socket.IO senders get the ack instead.
const echo = cfg.transport === 'raw';

const sent = clients.map(() => []); // per sender: records by sequence number
const stats = {
  sent: 0, confirmed: 0, send_errors: 0, deliveries: 0, duplicates: 0, unknown: 0,
  window_sent: 0, window_deliveries: 0, other_frames: 0, presence_frames: 0, error_samples: [],
};
let connectStart = 0;
let knowAll = 0; // clients told total_users equals the number of clients
let allJoinedAt = null;

// A presence frame for ``client``, with the room's size when it carries one.
function presence(client, total) {
  stats.presence_frames += 1;
  if (total === clients.length && !client.knowsAll) {
    client.knowsAll = true;
    knowAll += 1;
    if (knowAll === clients.length) allJoinedAt = now();
  }
}
const RAW_PRESENCE = ['{"type":"user_', '{"type":"mobile_user_', '{"type":"presence_diff"'];
const hist = new Histogram();
let phase = 'connect'; // connect | warmup | window | drain | done
let windowStart = Infinity;
let windowEnd = Infinity;
let sending = false;
let inflight = 0;
let lastPresenceAt = 0;

function contentFor(sender, seq, t) {
  const head = `B${sender}.${seq}.${t.toFixed(3)}|`;
  return head + 'x'.repeat(Math.max(0, CONTENT_BYTES - head.length));
}

function recordError(where, detail) {
  stats.send_errors += 1;
  if (stats.error_samples.length < 5) stats.error_samples.push({ where, detail });
}

function send(client) {
  const seq = sent[client.index].length;
  const t = now();
  const content = contentFor(client.index, seq, t);
  const record = { t, got: new Uint8Array(members.get(client.conversation_id)), confirmed: false,
    failed: false, pos: client.pos, conversation_id: client.conversation_id };
  sent[client.index].push(record);
  stats.sent += 1;
  if (t >= windowStart && t < windowEnd) stats.window_sent += 1;
  inflight += 1;
  client.conn.send(content, record);
}

function confirm(record) {
  if (record.confirmed || record.failed) return;
  record.confirmed = true;
  stats.confirmed += 1;
  inflight -= 1;
  pump();
}

function fail(record, detail) {
  if (record.confirmed || record.failed) return;
  record.failed = true;
  inflight -= 1;
  recordError('send', detail);
  pump();
}

function deliver(receiver, content) {
  const t = now();
  if (content.charCodeAt(0) !== B) return;
  const d1 = content.indexOf('.');
  const d2 = content.indexOf('.', d1 + 1);
  const bar = content.indexOf('|', d2 + 1);
  const sender = +content.slice(1, d1);
  const seq = +content.slice(d1 + 1, d2);
  const stamp = +content.slice(d2 + 1, bar);
  stats.deliveries += 1;
  const record = sent[sender] && sent[sender][seq];
  if (record === undefined) {
    stats.unknown += 1;
    return;
  }
  if (record.got[receiver.pos]++ > 0) stats.duplicates += 1;
  if (t >= windowStart && t < windowEnd) {
    stats.window_deliveries += 1;
    hist.add(t - stamp);
  }
  if (echo && sender === receiver.index) confirm(record);
}

// -- transports -----------------------------------------------------------------------------

// A ws connection to the client's node; its failures (after the ramp too) go to onFail.
function openWs(client, path, onFail) {
  const base = cfg.nodes[client.node].replace(/^http/, 'ws');
  const ws = new WebSocket(`${base}${path}`, { perMessageDeflate: false });
  ws.on('error', (err) => onFail(String(err && err.message)));
  ws.on('close', (code, reason) => {
    if (phase !== 'done') onFail(`closed ${code} ${reason}`);
  });
  return ws;
}

// A chat_message frame's benchmark content, found without decoding the frame.
function deliverFrame(client, text) {
  const at = text.indexOf('"content":"B');
  if (at >= 0) deliver(client, text.slice(at + 11, text.indexOf('"', at + 11)));
}

function connectRaw(client, onReady, onFail) {
  const ws = openWs(client, `/ws/chat/${client.conversation_id}/?token=${client.token}`, onFail);
  client.conn = {
    send(content) {
      ws.send(`{"type":"chat_message","content":"${content}"}`);
    },
    close() { ws.terminate(); },
  };
  ws.on('message', (data) => {
    const text = data.toString();
    if (text.startsWith('{"type":"chat_message"')) {
      deliverFrame(client, text);
      return;
    }
    if (text.startsWith('{"type":"recent_messages"')) {
      onReady();
      return;
    }
    if (text.startsWith('{"type":"error"')) {
      // The raw route answers a refused send with an error frame and no echo.
      const mine = sent[client.index].find((r) => !r.confirmed && !r.failed);
      if (mine) fail(mine, text.slice(0, 200));
      else recordError('frame', text.slice(0, 200));
      return;
    }
    stats.other_frames += 1;
    lastPresenceAt = now();
    if (RAW_PRESENCE.some((p) => text.startsWith(p))) {
      const total = text.includes('"total_users"') ? JSON.parse(text).total_users : undefined;
      presence(client, total);
    }
  });
}

function connectSio(client, onReady, onFail) {
  const socket = io(`${cfg.nodes[client.node]}/chat`, {
    transports: ['websocket'],
    forceNew: true,
    reconnection: false,
    timeout: 120000,
    perMessageDeflate: false,
    auth: { token: client.token, conversation_id: client.conversation_id },
  });
  client.conn = {
    send(content, record) {
      socket.emit('chat_message', { conversation_id: client.conversation_id, content },
        (ack) => {
          if (ack && ack.ok) confirm(record);
          else fail(record, JSON.stringify(ack).slice(0, 200));
        });
    },
    close() { socket.disconnect(); },
  };
  socket.on('chat_message', (data) => deliver(client, data.message.content));
  socket.on('user_joined', (data) => {
    lastPresenceAt = now();
    stats.other_frames += 1;
    presence(client, data.total_users);
    if (data.user_id === client.user_id) onReady();
  });
  socket.on('user_status', () => {
    lastPresenceAt = now();
    stats.other_frames += 1;
    presence(client);
  });
  socket.on('user_left', (data) => {
    lastPresenceAt = now();
    stats.other_frames += 1;
    presence(client, data.total_users);
  });
  // A large room's coalesced presence (no user_joined of one's own): joined by then.
  socket.on('presence_diff', (data) => {
    lastPresenceAt = now();
    stats.other_frames += 1;
    presence(client, data.total_users);
    onReady();
  });
  socket.on('error', (data) => recordError('event', JSON.stringify(data).slice(0, 200)));
  socket.on('connect_error', (err) => onFail(`connect_error ${err.message} ${JSON.stringify(err.data)}`));
  socket.on('disconnect', (reason) => {
    if (phase !== 'done') onFail(`disconnected: ${reason}`);
  });
}

// A receive-only Socket.IO client: Engine.IO v4 and Socket.IO v5 frames on ws, read the way
// the raw route's are (no full decode of a chat_message). The official client's packet
// decoding and event emitters cost about twice the CPU per delivery, which made the generator,
// not the server, the bottleneck of the Socket.IO fanout (--sio-receivers).
function connectSioLean(client, onReady, onFail) {
  const ws = openWs(client, '/socket.io/?EIO=4&transport=websocket', onFail);
  client.conn = {
    send() { throw new Error('a lean receiver does not send'); },
    close() { ws.terminate(); },
  };
  const event = (text) => JSON.parse(text.slice(text.indexOf('[')));
  ws.on('message', (data) => {
    const text = data.toString();
    if (text.startsWith('42/chat,["chat_message"')) {
      deliverFrame(client, text);
      return;
    }
    if (text === '2') { // Engine.IO ping
      ws.send('3');
      return;
    }
    if (text.startsWith('0{')) { // Engine.IO open: connect to the namespace
      const auth = { token: client.token, conversation_id: client.conversation_id };
      ws.send(`40/chat,${JSON.stringify(auth)}`);
      return;
    }
    if (text.startsWith('42/chat,["user_joined"') || text.startsWith('42/chat,["presence_diff"')) {
      lastPresenceAt = now();
      stats.other_frames += 1;
      const [name, data] = event(text);
      presence(client, data.total_users);
      if (name === 'presence_diff' || data.user_id === client.user_id) onReady();
      return;
    }
    if (text.startsWith('42/chat,["user_')) presence(client);
    if (text.startsWith('42/chat,["error"')) {
      recordError('event', text.slice(0, 200));
      return;
    }
    if (text.startsWith('44/chat,')) {
      onFail(`connect_error ${text.slice(0, 200)}`);
      return;
    }
    if (text.startsWith('40/chat,')) return; // connected; ready once joined
    lastPresenceAt = now();
    stats.other_frames += 1;
  });
}

const connectHist = new Histogram(); // ms from opening a connection to being in

function connectOne(client) {
  const opened = now();
  return new Promise((resolve, reject) => {
    const onReady = () => {
      if (client.ready) return;
      client.ready = true;
      connectHist.add(now() - opened);
      resolve();
    };
    const onFail = (why) => {
      if (!client.ready) reject(new Error(`client ${client.index}: ${why}`));
      else if (phase !== 'done') {
        stats.send_errors += 1;
        if (stats.error_samples.length < 5) stats.error_samples.push({ where: 'connection', detail: why });
      }
    };
    let connect = connectSio;
    if (cfg.transport === 'raw') connect = connectRaw;
    else if (cfg.sio_receivers === 'lean' && !client.sender) connect = connectSioLean;
    connect(client, onReady, onFail);
  });
}

async function connectAll() {
  const limit = cfg.connect_concurrency || 100;
  let next = 0;
  let done = 0;
  const started = now();
  connectStart = started;
  let lastReport = started;
  async function worker() {
    while (next < clients.length) {
      const client = clients[next];
      next += 1;
      await connectOne(client);
      done += 1;
      const t = now();
      if (t - lastReport > 2000) {
        lastReport = t;
        progress(`connected ${done}/${clients.length} (${Math.round(done / ((t - started) / 1000))}/s)`);
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, clients.length) }, worker));
  const seconds = (now() - started) / 1000;
  return { seconds, per_second: clients.length / seconds };
}

async function settle() {
  // Wait until the presence events of the ramp have stopped arriving (bounded).
  const deadline = now() + (cfg.settle_max_s || 60) * 1000;
  lastPresenceAt = Math.max(lastPresenceAt, now());
  while (now() < deadline && now() - lastPresenceAt < 1000) await sleep(100);
}

// -- senders --------------------------------------------------------------------------------

let pumpTarget = null; // fanout: the one sender

function pump() {
  if (pumpTarget === null) return;
  while (sending && inflight < cfg.inflight) send(pumpTarget);
}

function startRooms() {
  const period = 1000 / cfg.rate_per_client;
  for (const client of clients) {
    const first = Math.random() * period;
    setTimeout(() => {
      if (!sending) return;
      send(client);
      client.timer = setInterval(() => { if (sending) send(client); }, period);
    }, first);
  }
}

function stopRooms() {
  for (const client of clients) if (client.timer) clearInterval(client.timer);
}

// Deliveries still missing: of acknowledged messages (the server said it stored them: a
// missing delivery is lost), and of messages never acknowledged (still queued, or dropped).
function expectedMissing() {
  let missing = 0;
  let unconfirmed = 0;
  let undelivered = 0;
  for (const sender of clients) {
    for (const record of sent[sender.index]) {
      if (record.failed) continue;
      let absent = 0;
      const got = record.got;
      for (let pos = 0; pos < got.length; pos += 1) {
        if (!echo && pos === record.pos) continue;
        if (got[pos] === 0) absent += 1;
      }
      if (record.confirmed) missing += absent;
      else {
        unconfirmed += 1;
        undelivered += absent;
      }
    }
  }
  return { missing, unconfirmed, undelivered };
}

// Wait for what is still missing: at least drain_s, longer while deliveries keep arriving
// (an overloaded server is late, not lossy), at most drain_max_s.
async function drain() {
  const started = now();
  const floor = started + (cfg.drain_s || 10) * 1000;
  const ceiling = started + (cfg.drain_max_s || 120) * 1000;
  let state = expectedMissing();
  let seen = stats.deliveries;
  let movedAt = now();
  while ((state.missing > 0 || state.unconfirmed > 0) && now() < ceiling) {
    if (now() >= floor && now() - movedAt > 3000) break;
    await sleep(250);
    if (stats.deliveries !== seen) {
      seen = stats.deliveries;
      movedAt = now();
    }
    state = expectedMissing();
  }
  return state;
}

// -- the run --------------------------------------------------------------------------------

async function traffic() {
  const loop = monitorEventLoopDelay({ resolution: 10 });
  const warmupMs = cfg.warmup_s * 1000;
  const windowMs = cfg.duration_s * 1000;
  phase = 'warmup';
  sending = true;
  const t0 = now();
  windowStart = t0 + warmupMs;
  windowEnd = windowStart + windowMs;
  progress(`sending: ${cfg.warmup_s} s warm-up, then ${cfg.duration_s} s measured`);
  if (cfg.scenario === 'fanout') {
    pumpTarget = clients.find((c) => c.sender);
    pump();
  } else {
    startRooms();
  }
  await sleep(Math.max(0, windowStart - now()));
  phase = 'window';
  const cpu0 = process.cpuUsage();
  const real0 = now();
  loop.enable();
  line({ event: 'window_start' });
  let lastDeliveries = stats.window_deliveries;
  let lastT = now();
  while (now() < windowEnd) {
    await sleep(Math.min(cfg.progress_every_s * 1000, Math.max(0, windowEnd - now())));
    const t = now();
    if (t - lastT < 500) break;
    const rate = (stats.window_deliveries - lastDeliveries) / ((t - lastT) / 1000);
    lastDeliveries = stats.window_deliveries;
    lastT = t;
    const cpu = process.cpuUsage(cpu0);
    const genPct = ((cpu.user + cpu.system) / 1000 / (t - real0)) * 100;
    progress(`${Math.round((t - windowStart) / 1000)} s: ${Math.round(rate)} deliveries/s, ` +
      `${stats.sent} sent, in flight ${inflight}, generator CPU ${genPct.toFixed(0)} %`);
  }
  line({ event: 'window_end' });
  const cpu = process.cpuUsage(cpu0);
  const real = now() - real0;
  loop.disable();
  phase = 'drain';
  sending = false;
  stopRooms();
  const drainStart = now();
  const { missing, unconfirmed, undelivered } = await drain();
  return {
    window_s: real / 1000,
    generator_cpu_s: (cpu.user + cpu.system) / 1e6,
    generator_cpu_pct: ((cpu.user + cpu.system) / 1000 / real) * 100,
    generator_loop_delay_p99_ms: loop.percentile(99) / 1e6,
    lost: missing,
    unconfirmed,
    undelivered,
    drain_s: (now() - drainStart) / 1000,
  };
}

async function main() {
  line({ event: 'connecting', clients: clients.length });
  const ramp = await connectAll();
  line({ event: 'connected', seconds: ramp.seconds, per_second: ramp.per_second });
  if (cfg.scenario === 'join-storm') {
    const deadline = now() + (cfg.settle_max_s || 60) * 1000;
    while (allJoinedAt === null && now() < deadline) await sleep(20);
    if (allJoinedAt === null) throw new Error(`only ${knowAll}/${clients.length} clients were told the room's size`);
  }
  await settle();
  line({ event: 'settled' });
  let measured = {};
  if (cfg.scenario === 'connect') {
    // Nothing more: the ramp was the measurement.
  } else if (cfg.scenario === 'idle' || cfg.scenario === 'join-storm') {
    await sleep(cfg.hold_s * 1000);
    line({ event: 'hold_end' });
  } else {
    measured = await traffic();
  }
  phase = 'done';
  for (const client of clients) client.conn.close();
  const result = {
    event: 'result',
    scenario: cfg.scenario,
    transport: cfg.transport,
    clients: clients.length,
    connect_seconds: ramp.seconds,
    connections_per_second: ramp.per_second,
    ...measured,
    sent: stats.sent,
    confirmed: stats.confirmed,
    send_errors: stats.send_errors,
    error_samples: stats.error_samples,
    deliveries: stats.deliveries,
    window_sent: stats.window_sent,
    window_deliveries: stats.window_deliveries,
    duplicates: stats.duplicates,
    unknown: stats.unknown,
    other_frames: stats.other_frames,
    presence_frames: stats.presence_frames,
    all_joined_s: allJoinedAt === null ? null : (allJoinedAt - connectStart) / 1000,
    latency: hist.summary(),
    connect_latency: connectHist.summary(),
  };
  line(result);
  setTimeout(() => process.exit(0), 200);
}

// The scale scenarios live in modules of their own (lean clients of both transports, see
// scale.js); they share this file's histogram and output.
const SCALE = { 'idle-100k': './idle100k', 'big-room': './bigroom', storm: './storm' };
const scenarioMain = SCALE[cfg.scenario]
  ? () => require(SCALE[cfg.scenario]).run(cfg, { Histogram, line, progress })
      .then(() => setTimeout(() => process.exit(0), 200))
  : main;

scenarioMain().catch((err) => {
  line({ event: 'failed', message: String(err && err.stack ? err.stack : err) });
  process.exit(1);
});
