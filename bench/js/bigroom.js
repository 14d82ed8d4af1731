'use strict';
// big-room: one conversation of many members (10,000 by default) and, in the same run, one of
// 500 to compare with. For each size: every member connected (lean clients; the sender is
// position 0), then one sender at the maximum rate (messages in flight, as in fanout), then the
// same sender at a fixed rate (10 msg/s). Each phase: warm-up, measured window, drain.
//
// Per member: every acknowledged message received (or not), and the median latency of its
// deliveries in the window: the spread of those medians across members says whether a member
// starves. Events for bench/run.py: connecting, connected, settled (per size), phase_start /
// phase_end {label} (the node's CPU is read around each window), result.

const { LeanClient, Ledger, connectAndSettle, sourceAddress, peakRssKb, spread, now, sleep } = require('./scale');


async function runSize(cfg, group, tools) {
  const { Histogram, line, progress } = tools;
  const transport = cfg.transport;
  const clients = group.clients.map((spec, index) => ({ ...spec, index }));
  const ledger = new Ledger(clients, transport === 'raw');
  const errors = { count: 0, samples: [] };
  const note = (where, detail) => {
    errors.count += 1;
    if (errors.samples.length < 5) errors.samples.push({ where, detail });
  };
  let lastPresenceAt = 0;
  let closing = false;
  let presence = 0;
  // The window being measured: its histogram and each member's latencies.
  let win = null;
  ledger.onDelivery = (receiver, record, latency, t) => {
    if (win === null || t < win.start || t >= win.end) return;
    win.deliveries += 1;
    win.hist.add(latency);
    win.perMember[receiver.pos].push(latency);
  };
  const on = {
    ready(c) { c.ready = true; if (c.resolve) c.resolve(); c.resolve = null; },
    message(c, content) { ledger.deliver(c, content); },
    replay(c, content) { ledger.deliver(c, content); },
    presence() { presence += 1; lastPresenceAt = now(); },
    close(c, code, reason) {
      // Before it was ready: the ramp fails; after: counted and told.
      if (c.reject && !c.ready) c.reject(new Error(`client ${c.index}: closed ${code} ${reason}`));
      else if (!closing) note('connection', `client ${c.index} closed ${code} ${reason}`);
      c.reject = null;
    },
    other(c, text) {
      if (text.includes('"error"')) note('frame', text.slice(0, 200));
    },
  };
  for (const c of clients) {
    const localAddress = sourceAddress(c.index, cfg.clients_per_address || 25000);
    c.conn = new LeanClient(c, { transport, url: cfg.nodes[0], localAddress, on });
  }
  const ramp = await connectAndSettle(clients, cfg, { line, progress }, () => lastPresenceAt, { label: group.label });

  const sender = clients.find((c) => c.pos === 0);
  const phases = {};
  for (const mode of ['max', 'rate']) {
    const label = `${group.label}-${mode}`;
    let inflight = 0;
    let sending = true;
    const sendOne = () => {
      const record = ledger.create(sender, now(), cfg.message_bytes || 64);
      inflight += 1;
      const settle = () => { inflight -= 1; if (mode === 'max') pump(); };
      record.onConfirm = settle;
      const ok = sender.conn.send(record.content, null, (acked, detail) => {
        if (acked) ledger.confirm(record);
        else { record.failed = true; note('send', detail); }
        settle();
      });
      if (!ok) { record.failed = true; note('send', 'connection down'); }
    };
    // Raw: the echo confirms (in the ledger); count it off the in-flight window here.
    ledger.onConfirm = (record) => { if (transport === 'raw' && record.onConfirm) record.onConfirm(); };
    const pump = () => {
      while (sending && inflight < (cfg.inflight || 20)) sendOne();
    };
    let timer = null;
    if (mode === 'max') pump();
    else timer = setInterval(() => { if (sending) sendOne(); }, 1000 / (cfg.big_rate || 10));
    const start = now() + cfg.warmup_s * 1000;
    win = { start, end: start + cfg.duration_s * 1000, hist: new Histogram(), deliveries: 0,
      perMember: clients.map(() => []) };
    progress(`${label}: ${mode === 'max' ? `${cfg.inflight || 20} in flight` : `${cfg.big_rate || 10} msg/s`}, ` +
      `${cfg.warmup_s} s warm-up, then ${cfg.duration_s} s measured`);
    await sleep(Math.max(0, win.start - now()));
    const sent0 = ledger.stats.sent;
    const cpu0 = process.cpuUsage();
    line({ event: 'phase_start', label });
    await sleep(Math.max(0, win.end - now()));
    line({ event: 'phase_end', label });
    const cpu = process.cpuUsage(cpu0);
    const windowSent = ledger.stats.sent - sent0;
    sending = false;
    if (timer) clearInterval(timer);
    const drained = await ledger.drain(cfg.drain_s * 1000, cfg.drain_max_s * 1000);
    ledger.onConfirm = null;
    // Each member's median latency in the window (the sender too on raw, which echoes).
    const medians = [];
    const counts = [];
    for (const c of clients) {
      const values = win.perMember[c.pos];
      if (transport !== 'raw' && c.pos === sender.pos) continue;
      counts.push(values.length);
      if (values.length === 0) continue;
      values.sort((a, b) => a - b);
      medians.push(values[Math.floor((values.length - 1) / 2)]);
    }
    phases[label] = {
      window_s: cfg.duration_s,
      window_sent: windowSent,
      window_deliveries: win.deliveries,
      latency: win.hist.summary(),
      member_median_ms: spread(medians),
      member_deliveries: spread(counts),
      members: counts.length,
      ...drained,
      generator_cpu_pct: ((cpu.user + cpu.system) / 1000 / (cfg.duration_s * 1000)) * 100,
    };
    win = null;
    progress(`${label}: ${Math.round(phases[label].window_deliveries / cfg.duration_s)} deliveries/s, ` +
      `lost ${drained.lost}, members missing any ${drained.members_missing_any}`);
  }
  closing = true;
  for (const c of clients) c.conn.close();
  await sleep(1000); // let the node see the closes before the next size connects
  return {
    clients: clients.length,
    connections_per_second: ramp.per_second,
    connect_seconds: ramp.seconds,
    presence_frames: presence,
    sent: ledger.stats.sent,
    duplicates: ledger.stats.duplicates,
    unknown: ledger.stats.unknown,
    send_errors: errors.count,
    error_samples: errors.samples,
    phases,
  };
}

async function run(cfg, tools) {
  const sizes = {};
  for (const group of cfg.groups) sizes[group.label] = await runSize(cfg, group, tools);
  const big = cfg.groups[cfg.groups.length - 1];
  const first = sizes[big.label];
  tools.line({
    event: 'result',
    scenario: cfg.scenario,
    transport: cfg.transport,
    clients: first.clients,
    connections_per_second: first.connections_per_second,
    connect_seconds: first.connect_seconds,
    sizes,
    generator_peak_rss_kb: peakRssKb(),
  });
}

module.exports = { run };
