'use strict';
// idle-100k: many idle connections on one node (100,000 by default, conversations of 10),
// opened from several loopback source addresses; held over at least two heartbeat intervals;
// then a light load (pairs of clients in small rooms, 1 msg/s each) while they are all held.
//
// Events for bench/run.py: connecting, connected, settled, hold_end (the node's memory and
// idle CPU are read around the hold), window_start / window_end (the light load), result.

const { LeanClient, Ledger, connectAndSettle, sourceAddress, peakRssKb, now, sleep } = require('./scale');


async function run(cfg, { Histogram, line, progress }) {
  const transport = cfg.transport;
  const clients = cfg.clients.map((spec, index) => ({ ...spec, index }));
  const ledger = new Ledger(clients, transport === 'raw');
  const stats = { presence_frames: 0, other_frames: 0, errors: 0, error_samples: [] };
  let lastPresenceAt = 0;
  let phase = 'connect';
  const hist = new Histogram();
  let windowStart = Infinity;
  let windowEnd = Infinity;
  const note = (where, detail) => {
    stats.errors += 1;
    if (stats.error_samples.length < 5) stats.error_samples.push({ where, detail });
  };
  ledger.onDelivery = (receiver, record, latency, t) => {
    if (t >= windowStart && t < windowEnd) hist.add(latency);
  };
  const on = {
    ready(c) { c.ready = true; if (c.resolve) c.resolve(); c.resolve = null; },
    message(c, content) { ledger.deliver(c, content); },
    replay(c, content) { ledger.deliver(c, content); },
    presence() { stats.presence_frames += 1; lastPresenceAt = now(); },
    close(c, code, reason) {
      // Before it was ready: the ramp fails; after (the ramp, the hold): counted and told.
      if (c.reject && !c.ready) c.reject(new Error(`client ${c.index}: closed ${code} ${reason}`));
      else if (phase !== 'done') note('connection', `client ${c.index} closed ${code} ${reason}`);
      c.reject = null;
    },
    other(c, text) {
      stats.other_frames += 1;
      if (text.startsWith('{"type":"error"') || text.includes('"error"')) note('frame', text.slice(0, 200));
    },
  };
  const perAddress = cfg.clients_per_address || 25000;
  const addresses = new Set();
  for (const c of clients) {
    const localAddress = sourceAddress(c.index, perAddress);
    addresses.add(localAddress);
    c.conn = new LeanClient(c, { transport, url: cfg.nodes[0], localAddress, on });
  }
  const ramp = await connectAndSettle(clients, cfg, { line, progress }, () => lastPresenceAt, { source_addresses: [...addresses] });
  phase = 'hold';
  progress(`holding ${clients.length} connections for ${cfg.hold_s} s`);
  const holdEnd = now() + cfg.hold_s * 1000;
  while (now() < holdEnd) {
    await sleep(Math.min(10000, holdEnd - now()));
    const up = clients.reduce((n, c) => n + (c.conn.up ? 1 : 0), 0);
    progress(`held: ${up}/${clients.length} connections up`);
  }
  const heldUp = clients.reduce((n, c) => n + (c.conn.up ? 1 : 0), 0);
  line({ event: 'hold_end', up: heldUp });

  // The light load: positions 0 and 1 of the first `load_pairs` conversations, each sending
  // `load_rate` msg/s, every connection still held.
  phase = 'load';
  const rooms = [...new Set(clients.map((c) => c.conversation_id))].slice(0, cfg.load_pairs || 50);
  const roomSet = new Set(rooms);
  const senders = clients.filter((c) => roomSet.has(c.conversation_id) && c.pos < 2);
  const period = 1000 / (cfg.load_rate || 1);
  let sending = true;
  for (const s of senders) {
    const tick = () => {
      if (!sending) return;
      const record = ledger.create(s, now(), cfg.message_bytes || 64);
      const ok = s.conn.send(record.content, null, (acked, detail) => {
        if (acked) ledger.confirm(record);
        else { record.failed = true; note('send', detail); }
      });
      if (!ok) { record.failed = true; note('send', 'connection down'); }
    };
    setTimeout(() => { tick(); s.timer = setInterval(tick, period); }, Math.random() * period);
  }
  const t0 = now();
  windowStart = t0 + cfg.warmup_s * 1000;
  windowEnd = windowStart + cfg.duration_s * 1000;
  progress(`light load: ${senders.length} senders x ${cfg.load_rate || 1} msg/s; ` +
    `${cfg.warmup_s} s warm-up, then ${cfg.duration_s} s measured`);
  await sleep(Math.max(0, windowStart - now()));
  const cpu0 = process.cpuUsage();
  line({ event: 'window_start' });
  const sent0 = ledger.stats.sent;
  await sleep(Math.max(0, windowEnd - now()));
  line({ event: 'window_end' });
  const cpu = process.cpuUsage(cpu0);
  const windowSent = ledger.stats.sent - sent0;
  sending = false;
  for (const s of senders) clearInterval(s.timer);
  const drained = await ledger.drain(cfg.drain_s * 1000, cfg.drain_max_s * 1000);
  phase = 'done';
  const stillUp = clients.reduce((n, c) => n + (c.conn.up ? 1 : 0), 0);
  for (const c of clients) c.conn.close();
  line({
    event: 'result',
    scenario: cfg.scenario,
    transport,
    clients: clients.length,
    source_addresses: [...addresses],
    connect_seconds: ramp.seconds,
    connections_per_second: ramp.per_second,
    up_after_hold: heldUp,
    up_at_end: stillUp,
    load_senders: senders.length,
    window_s: cfg.duration_s,
    window_sent: windowSent,
    sent: ledger.stats.sent,
    confirmed: ledger.stats.confirmed,
    deliveries: ledger.stats.deliveries,
    duplicates: ledger.stats.duplicates,
    unknown: ledger.stats.unknown,
    lost: drained.lost,
    unconfirmed: drained.unconfirmed,
    undelivered: drained.undelivered,
    drain_s: drained.drain_s,
    presence_frames: stats.presence_frames,
    other_frames: stats.other_frames,
    send_errors: stats.errors,
    error_samples: stats.error_samples,
    latency: hist.summary(),
    generator_cpu_s: (cpu.user + cpu.system) / 1e6,
    generator_cpu_pct: ((cpu.user + cpu.system) / 1000 / (cfg.duration_s * 1000)) * 100,
    generator_peak_rss_kb: peakRssKb(),
    generator_heap_used_kb: Math.round(process.memoryUsage().heapUsed / 1024),
  });
}

module.exports = { run };
