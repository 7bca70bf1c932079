'use strict';
/**
 * An ably-js Realtime presence member and observer driven line by line from
 * stdin (the protocol of peer.js: one JSON command per line, answered by one
 * JSON line with the same `id`), for test_our_client_realtime.py.
 *
 * argv[2]: {endpoint, port, key, binary, clientId}. Authenticates with the key.
 *
 * Commands: {op: 'ready'} -> connectionId;
 * {op: 'watch', channel} attaches and records every presence event;
 * {op: 'enter' | 'update' | 'leave', channel, data: {type, value}};
 * {op: 'members', channel} -> presence.get() (waits for SYNC), as descriptions;
 * {op: 'events', channel} -> every presence event recorded so far;
 * {op: 'close'} -> closes and exits. SIGKILL is the abrupt way out.
 */
const readline = require('readline');
const { Ably, config, options, makeData, describeMember, emit } = require('./common');

const cfg = config();
const realtime = new Ably.Realtime(options(cfg, { key: cfg.key, clientId: cfg.clientId }));
const events = new Map(); // channel name -> presence event descriptions

const handlers = {
  async ready() {
    await realtime.connection.whenState('connected');
    return { connectionId: realtime.connection.id, clientId: realtime.auth.clientId };
  },
  async watch(cmd) {
    const recorded = [];
    events.set(cmd.channel, recorded);
    await realtime.channels.get(cmd.channel).presence.subscribe((m) => recorded.push(describeMember(m)));
    return {};
  },
  async enter(cmd) {
    await realtime.channels.get(cmd.channel).presence.enter(makeData(cmd.data));
    return {};
  },
  async update(cmd) {
    await realtime.channels.get(cmd.channel).presence.update(makeData(cmd.data));
    return {};
  },
  async leave(cmd) {
    await realtime.channels.get(cmd.channel).presence.leave(makeData(cmd.data));
    return {};
  },
  async members(cmd) {
    const members = await realtime.channels.get(cmd.channel).presence.get();
    return { members: members.map(describeMember) };
  },
  async events(cmd) {
    return { events: events.get(cmd.channel) || [] };
  },
  async close() {
    realtime.close();
    await realtime.connection.whenState('closed');
    return {};
  },
};

const lines = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
lines.on('line', (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    const cmd = JSON.parse(line);
    try {
      const handler = handlers[cmd.op];
      if (!handler) throw new Error(`unknown op ${cmd.op}`);
      emit(Object.assign({ id: cmd.id, ok: true }, await handler(cmd)));
    } catch (err) {
      emit({ id: cmd.id, error: String(err && err.message ? err.message : err), code: err && err.code });
    }
    if (cmd.op === 'close') process.exit(0);
  });
});
lines.on('close', () => {
  queue.then(() => process.exit(0));
});
