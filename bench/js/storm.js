'use strict';
// storm: a reconnect storm. Many clients (20,000 by default) in rooms of 5,000, every one
// connected and resuming from what it last saw (CONTRACT §9: raw `?since=POSITION&epoch=EPOCH`,
// Socket.IO `join {conversation_id, since}`); one sender per room sending `storm_rate` msg/s with
// a client_msg_id. Then the generator says `restart`; bench/run.py stops the node (SIGTERM) and
// starts a new one on the same port (as behind a proxy), and writes `up` on our stdin once it
// answers. From then every client reconnects, spread evenly over `spread_s` (1 s), retrying a
// failed connect after 0.5–1 s; senders resend what was not acknowledged, with the same
// client_msg_id, once they are back.
//
// A client is caught up when it is joined and holds every message acknowledged before its join
// completed; the storm is over when every client is caught up and every message sent during
// the outage (or in flight at the restart) is acknowledged and held by every member.
// Events for bench/run.py: connecting, connected, settled, restart, storm_up, storm_end,
// result.

const { LeanClient, Ledger, connectAndSettle, sourceAddress, peakRssKb, spread, now, sleep } = require('./scale');


async function run(cfg, { line, progress }) {
  const transport = cfg.transport;
  const echo = transport === 'raw';
  const clients = cfg.clients.map((spec, index) => ({ ...spec, index }));
  const ledger = new Ledger(clients, echo);
  const errors = { count: 0, samples: [] };
  const note = (where, detail) => {
    errors.count += 1;
    if (errors.samples.length < 8) errors.samples.push({ where, detail });
  };
  let phase = 'connect'; // connect | steady | storm | after | done
  let lastPresenceAt = 0;
  const frames = { presence: 0, messages: 0, replays: 0, other: 0 };
  let tRestart = null;
  let tUp = null;
  let joined = 0;
  let caught = 0;
  let lastJoinAt = null;
  let lastCaughtAt = null;
  const backlog = []; // records in flight at the restart or made while their sender was down

  // Counted once per client: a client closed again in the storm (a failed handshake, a
  // keepalive timeout) counts again only once it is back.
  const caughtUp = (c) => {
    if (c.caught) return;
    c.caught = true;
    caught += 1;
    lastCaughtAt = now();
  };
  ledger.onDelivery = (receiver, record, latency, t, first) => {
    if (first && record.gotAt) record.gotAt[receiver.pos] = t;
    if (first && receiver.owed && receiver.owed.delete(record) && receiver.owed.size === 0
        && phase === 'storm' && !receiver.caught) caughtUp(receiver);
  };
  const deliver = (c, content, replay) => {
    const record = ledger.deliver(c, content);
    if (phase !== 'storm') return;
    if (replay || (record && c.owedAtJoin && c.owedAtJoin.has(record))) frames.replays += 1;
    else frames.messages += 1;
  };
  const on = {
    ready(c) {
      if (c.resolve) { c.resolve(); c.resolve = null; }
      if (phase === 'storm' && !c.stormJoined) {
        c.stormJoined = true;
        joined += 1;
        lastJoinAt = now();
        // What it must get now: every acknowledged message of its room it does not hold.
        const owed = new Set();
        for (const record of ledger.byRoom.get(c.conversation_id) || []) {
          if (!record.confirmed || record.got[c.pos] > 0) continue;
          if (!echo && record.pos === c.pos) continue;
          owed.add(record);
        }
        c.owed = owed;
        c.owedAtJoin = new Set(owed);
        if (owed.size === 0) caughtUp(c);
      }
      if (c.sender) resend(c);
    },
    message(c, content) { deliver(c, content, false); },
    replay(c, content) { deliver(c, content, true); },
    presence() {
      lastPresenceAt = now();
      if (phase === 'storm') frames.presence += 1;
    },
    close(c, code, reason) {
      if (c.reject) { const reject = c.reject; c.reject = null; reject(new Error(`closed ${code} ${reason}`)); }
      if (phase === 'storm' && c.stormJoined) {
        c.stormJoined = false;
        joined -= 1;
        c.reconnects = (c.reconnects || 0) + 1;
        if (c.caught) { c.caught = false; caught -= 1; }
      }
      if (phase === 'storm' && tUp !== null && !c.retrying) retry(c);
      else if (phase !== 'storm' && phase !== 'done') note('connection', `client ${c.index} closed ${code} ${reason}`);
    },
    other(c, text) {
      if (phase === 'storm') frames.other += 1;
      if (text.includes('"error"') || text.includes('resync_required') || text.startsWith('join refused')
          || text.startsWith('44')) {
        note('frame', text.slice(0, 200));
      }
    },
  };
  const perAddress = cfg.clients_per_address || 25000;
  for (const c of clients) {
    c.conn = new LeanClient(c, { transport, url: cfg.nodes[0], resume: true, epoch: cfg.epoch,
      localAddress: sourceAddress(c.index, perAddress), on });
  }

  // -- senders: one per room; what is not acknowledged is sent again after a reconnect ------
  const senders = clients.filter((c) => c.sender);
  for (const s of senders) s.pending = [];
  let resentInFlight = 0; // resent after having reached the socket once (in flight at the restart)
  const transmit = (s, record) => {
    record.transmits = (record.transmits || 0) + 1;
    if (record.transmits === 2) resentInFlight += 1;
    s.conn.send(record.content, record.clientMsgId, (acked, detail) => {
      if (acked) ledger.confirm(record);
      else if (detail !== 'connection closed') note('send', detail);
    });
  };
  function resend(s) {
    s.pending = s.pending.filter((r) => !r.confirmed);
    for (const record of s.pending) transmit(s, record);
  }
  const markBacklog = (record) => {
    if (record.gotAt) return;
    record.gotAt = new Float64Array(record.got.length);
    backlog.push(record);
  };
  let sending = false;
  const tick = (s) => {
    if (!sending) return;
    const record = ledger.create(s, now(), cfg.message_bytes || 64);
    s.pending.push(record);
    if (s.conn.up) transmit(s, record);
    else if (phase === 'storm') markBacklog(record); // fails now; sent again once back
  };

  // -- connect, settle, send a while -------------------------------------------------------
  const ramp = await connectAndSettle(clients, cfg, { line, progress }, () => lastPresenceAt);
  phase = 'steady';
  sending = true;
  const period = 1000 / (cfg.storm_rate || 5);
  for (const s of senders) s.timer = setInterval(() => tick(s), period);
  progress(`${senders.length} senders at ${cfg.storm_rate || 5} msg/s each; restart in ${cfg.warmup_s} s`);
  await sleep(cfg.warmup_s * 1000);

  // -- the storm ---------------------------------------------------------------------------
  const upSignal = new Promise((resolve) => {
    let buffered = '';
    process.stdin.setEncoding('utf8');
    process.stdin.on('data', (chunk) => {
      buffered += chunk;
      if (buffered.includes('up')) resolve();
    });
  });
  phase = 'storm';
  for (const s of senders) for (const r of s.pending) if (!r.confirmed) markBacklog(r);
  tRestart = now();
  line({ event: 'restart' });
  let failedConnects = 0;
  function retry(c) {
    failedConnects += 1;
    c.retrying = true;
    setTimeout(() => {
      c.retrying = false;
      if (phase === 'done' || c.conn.up) return;
      if (now() - tUp > (cfg.storm_max_s || 300) * 1000) return;
      c.conn.connect();
    }, 500 + Math.random() * 500);
  }
  await upSignal;
  tUp = now();
  const cpuAtUp = process.cpuUsage();
  const downAtUp = clients.reduce((n, c) => n + (c.conn.ws === null ? 1 : 0), 0);
  line({ event: 'storm_up', down: downAtUp });
  progress(`node back up ${((tUp - tRestart) / 1000).toFixed(1)} s after the restart; ` +
    `${clients.length} clients reconnect over ${cfg.spread_s} s`);
  const spreadMs = (cfg.spread_s === undefined ? 1 : cfg.spread_s) * 1000;
  clients.forEach((c, i) => {
    setTimeout(() => {
      if (c.conn.ws === null && !c.conn.up) c.conn.connect();
    }, (i / clients.length) * spreadMs);
  });
  const deadline = tUp + (cfg.storm_max_s || 300) * 1000;
  let lastReport = now();
  const backlogDone = () => backlog.every((r) => {
    if (!r.confirmed) return false;
    for (let pos = 0; pos < r.got.length; pos += 1) {
      if (!echo && pos === r.pos) continue;
      if (r.got[pos] === 0) return false;
    }
    return true;
  });
  let complete = false;
  while (now() < deadline) {
    if (caught === clients.length && backlogDone()) { complete = true; break; }
    await sleep(50);
    if (now() - lastReport > 5000) {
      lastReport = now();
      progress(`storm: ${joined}/${clients.length} joined, ${caught} caught up, ` +
        `${((now() - tUp) / 1000).toFixed(0)} s since the node came up`);
    }
  }
  // Caught up: the last client holding what it owed at its join, or the last delivery of a
  // message of the outage, whichever came later.
  let lastBacklogAt = tUp;
  for (const r of backlog) {
    for (let pos = 0; pos < r.gotAt.length; pos += 1) if (r.gotAt[pos] > lastBacklogAt) lastBacklogAt = r.gotAt[pos];
  }
  const tCaught = complete ? Math.max(lastCaughtAt || tUp, lastBacklogAt) : null;
  // When it did not end: who still waits for what (the first few), to read in the JSON.
  const stuck = [];
  if (!complete) {
    for (const c of clients) {
      if (stuck.length >= 5) break;
      if (c.caught) continue;
      stuck.push({ client: c.index, conversation_id: c.conversation_id, pos: c.pos,
        up: c.conn.up, position: c.conn.position, last_error: c.conn.lastError || null,
        owed: c.owed ? [...c.owed].slice(0, 5).map((r) => r.clientMsgId) : null });
    }
    for (const r of backlog) {
      if (stuck.length >= 10) break;
      const absent = [];
      for (let pos = 0; pos < r.got.length; pos += 1) {
        if ((echo || pos !== r.pos) && r.got[pos] === 0) absent.push(pos);
      }
      if (!r.confirmed || absent.length) {
        stuck.push({ backlog: r.clientMsgId, confirmed: r.confirmed, absent: absent.slice(0, 10) });
      }
    }
  }
  // This process's own CPU over the storm, user and kernel apart: the storm's time is the
  // node's only while this stays below a core.
  const stormCpu = process.cpuUsage(cpuAtUp);
  const stormWall = (now() - tUp) / 1000;
  line({ event: 'storm_end', complete });
  const stormFrames = { ...frames };
  phase = 'after';
  progress(complete
    ? `storm over: every client joined in ${((lastJoinAt - tUp) / 1000).toFixed(1)} s, caught up in ${((tCaught - tUp) / 1000).toFixed(1)} s`
    : `storm NOT over after ${cfg.storm_max_s || 300} s: ${joined}/${clients.length} joined, ${caught} caught up`);
  await sleep(2000);
  sending = false;
  for (const s of senders) clearInterval(s.timer);
  const drained = await ledger.drain(cfg.drain_s * 1000, cfg.drain_max_s * 1000);
  phase = 'done';
  for (const c of clients) c.conn.close();
  const owedSizes = clients.filter((c) => c.owedAtJoin).map((c) => c.owedAtJoin.size);
  line({
    event: 'result',
    scenario: cfg.scenario,
    transport,
    clients: clients.length,
    rooms: senders.length,
    connect_seconds: ramp.seconds,
    connections_per_second: ramp.per_second,
    complete,
    node_down_s: (tUp - tRestart) / 1000,
    all_joined_s: joined === clients.length ? (lastJoinAt - tUp) / 1000 : null,
    all_caught_up_s: tCaught === null ? null : (tCaught - tUp) / 1000,
    joined,
    caught_up: caught,
    backlog_messages: backlog.length,
    // Clients that were closed again after joining in the storm, and connects that failed.
    closed_after_join: clients.filter((c) => c.reconnects).length,
    failed_connects: failedConnects,
    owed_at_join: spread(owedSizes),
    stuck,
    storm_frames: stormFrames,
    sent: ledger.stats.sent,
    confirmed: ledger.stats.confirmed,
    deliveries: ledger.stats.deliveries,
    duplicates: ledger.stats.duplicates,
    duplicates_to_senders: ledger.stats.duplicates_to_senders,
    resent_in_flight: resentInFlight,
    unknown: ledger.stats.unknown,
    lost: drained.lost,
    unconfirmed: drained.unconfirmed,
    undelivered: drained.undelivered,
    members_missing_any: drained.members_missing_any,
    drain_s: drained.drain_s,
    send_errors: errors.count,
    error_samples: errors.samples,
    generator_peak_rss_kb: peakRssKb(),
    generator_storm_cpu: { user_s: stormCpu.user / 1e6, system_s: stormCpu.system / 1e6,
      pct: ((stormCpu.user + stormCpu.system) / 1e4) / stormWall },
  });
}

module.exports = { run };
