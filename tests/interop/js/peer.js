'use strict';
/**
 * An ably-js Realtime client driven line by line from stdin, for cross-SDK
 * tests: each stdin line is a JSON command, answered by one JSON line on
 * stdout carrying the same `id` ({id, ok: true, ...} or {id, error, code}).
 *
 * argv[2]: {endpoint, port, key, binary, clientId?, token?}. With `token`
 * true the client authenticates with an authCallback that returns a
 * TokenRequest (signed with the key); otherwise with the key itself.
 *
 * Commands: {op: 'ready'} -> connectionId; {op: 'subscribe', channel, params?};
 * {op: 'publish', channel, name, data: {type, value}};
 * {op: 'messages', channel, count, timeoutMs} -> the first `count` received;
 * {op: 'enter', channel, data}; {op: 'leave', channel};
 * {op: 'members', channel, clientIds, timeoutMs} -> members once all are present;
 * {op: 'close'} -> closes and exits.
 */
const readline = require('readline');
const { Ably, config, options, makeData, describeMessage, describeMember, emit, within } = require('./common');

const cfg = config();
const keyRest = new Ably.Rest(options(cfg, { key: cfg.key }));
const clientOptions = cfg.token
  ? {
      authCallback: (params, callback) => {
        keyRest.auth
          .createTokenRequest({ clientId: cfg.clientId })
          .then((tokenRequest) => callback(null, tokenRequest), (err) => callback(err, null));
      },
    }
  : { key: cfg.key, clientId: cfg.clientId };
// The vcdiff plugin, so channels subscribed with params {delta: 'vcdiff'} get deltas.
clientOptions.plugins = { vcdiff: require('@ably/vcdiff-decoder') };
const realtime = new Ably.Realtime(options(cfg, clientOptions));
const inboxes = new Map(); // channel name -> received message descriptions
const waiters = []; // functions re-checked whenever something arrives

function notify() {
  for (const check of waiters.slice()) check();
}

function until(predicate, ms, what) {
  return within(
    ms,
    what,
    new Promise((resolve) => {
      const check = () => {
        Promise.resolve(predicate()).then((value) => {
          if (value) {
            const at = waiters.indexOf(check);
            if (at >= 0) waiters.splice(at, 1);
            resolve(value);
          }
        });
      };
      waiters.push(check);
      check();
    }),
  );
}

const handlers = {
  async ready() {
    await within(10000, 'connect', realtime.connection.whenState('connected'));
    return { connectionId: realtime.connection.id, clientId: realtime.auth.clientId };
  },
  async subscribe(cmd) {
    const channel = realtime.channels.get(cmd.channel, cmd.params ? { params: cmd.params } : undefined);
    if (!inboxes.has(cmd.channel)) inboxes.set(cmd.channel, []);
    await channel.subscribe((message) => {
      inboxes.get(cmd.channel).push(describeMessage(message));
      notify();
    });
    return {};
  },
  async publish(cmd) {
    await realtime.channels.get(cmd.channel).publish(cmd.name, makeData(cmd.data));
    return {};
  },
  async messages(cmd) {
    const inbox = inboxes.get(cmd.channel) || [];
    await until(() => inbox.length >= cmd.count, cmd.timeoutMs || 10000, `${cmd.count} messages`);
    return { messages: inbox.slice(0, cmd.count) };
  },
  async enter(cmd) {
    const channel = realtime.channels.get(cmd.channel);
    await channel.presence.subscribe(() => notify());
    await channel.presence.enter(makeData(cmd.data));
    return {};
  },
  async leave(cmd) {
    await realtime.channels.get(cmd.channel).presence.leave();
    return {};
  },
  async members(cmd) {
    const presence = realtime.channels.get(cmd.channel).presence;
    const wanted = cmd.clientIds || [];
    const members = await until(
      async () => {
        const current = await presence.get();
        const ids = current.map((m) => m.clientId);
        return wanted.every((id) => ids.includes(id)) ? current : null;
      },
      cmd.timeoutMs || 10000,
      `members ${wanted}`,
    );
    return { members: members.map(describeMember) };
  },
  async close() {
    realtime.close();
    await within(10000, 'close', realtime.connection.whenState('closed'));
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
