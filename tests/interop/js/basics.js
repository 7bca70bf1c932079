'use strict';
/**
 * ably-js on its own against the emulator: REST time, Realtime with a key,
 * publish/subscribe of string, JSON and binary payloads, presence enter + get,
 * paginated REST history (hasNext/next) and untilAttach history, and token
 * auth through createTokenRequest + authCallback for both Realtime and Rest.
 *
 * argv[2]: {endpoint, port, key, binary, channel}. Prints one JSON object.
 */
const { Ably, config, options, describeMessage, describeMember, emit, within } = require('./common');

async function collect(channel, count) {
  const received = [];
  let done;
  const all = new Promise((resolve) => {
    done = resolve;
  });
  await channel.subscribe((message) => {
    received.push(describeMessage(message));
    if (received.length === count) done(received.slice(0, count));
  });
  return { all }; // wrapped: an async function returning a bare promise would await it
}

async function main() {
  const cfg = config();
  const out = {};
  const rest = new Ably.Rest(options(cfg, { key: cfg.key }));
  out.time = await rest.time();

  const realtime = new Ably.Realtime(options(cfg, { key: cfg.key, clientId: 'js-key' }));
  await within(10000, 'connect with key', realtime.connection.once('connected'));
  out.connectionId = realtime.connection.id;
  const channel = realtime.channels.get(cfg.channel);
  const restChannel = rest.channels.get(cfg.channel);
  await restChannel.publish('before-attach', 'early');
  const own = await collect(channel, 3); // attaches: the attach point follows 'before-attach'
  await channel.publish('text', 'hello');
  await channel.publish('json', { a: [1, 2], b: 'c' });
  await channel.publish('binary', Buffer.from([0, 1, 254, 255]));
  out.received = await within(10000, 'own messages', own.all);

  await channel.presence.enter({ mood: 'ok' });
  out.members = (await channel.presence.get()).map(describeMember);

  await restChannel.publish([{ name: 'r1', data: 'x' }, { name: 'r2', data: 'y' }]);
  out.pages = [];
  let page = await restChannel.history({ limit: 2 });
  for (;;) {
    out.pages.push({ names: page.items.map((m) => m.name), hasNext: page.hasNext(), isLast: page.isLast() });
    if (!page.hasNext()) break;
    page = await page.next();
  }
  out.untilAttach = (await channel.history({ untilAttach: true, direction: 'forwards' })).items.map(
    (m) => m.name,
  );

  // Token auth: the callback hands back a TokenRequest signed by a key holder.
  let callbacks = 0;
  const authCallback = (params, callback) => {
    callbacks += 1;
    rest.auth
      .createTokenRequest({ clientId: 'js-token', capability: { '*': ['publish', 'subscribe', 'presence'] } })
      .then((tokenRequest) => callback(null, tokenRequest), (err) => callback(err, null));
  };
  const tokenRealtime = new Ably.Realtime(options(cfg, { authCallback }));
  await within(10000, 'connect with authCallback', tokenRealtime.connection.once('connected'));
  out.tokenClientId = tokenRealtime.auth.clientId;
  const tokenChannel = tokenRealtime.channels.get(cfg.channel);
  const tokenOwn = await collect(tokenChannel, 1);
  await tokenChannel.publish('from-token', 'signed');
  out.tokenReceived = await within(10000, 'token client message', tokenOwn.all);
  try {
    // The token's capability has no 'history': the emulator must refuse with 40160.
    await tokenRealtime.channels.get(cfg.channel).history({ limit: 1 });
    out.tokenHistory = 'allowed';
  } catch (err) {
    out.tokenHistory = { code: err.code, statusCode: err.statusCode };
  }

  const tokenRest = new Ably.Rest(options(cfg, { authCallback }));
  await tokenRest.channels.get(cfg.channel).publish('rest-token', 'via rest');
  const last = await rest.channels.get(cfg.channel).history({ limit: 1 });
  out.restTokenMessage = describeMessage(last.items[0]);
  out.authCallbacks = callbacks;

  realtime.close();
  tokenRealtime.close();
  await within(10000, 'close', realtime.connection.once('closed'));
  emit(out);
}

process.on('beforeExit', () => {
  // The event loop emptied with main() still pending: something never resolved.
  emit({ error: 'basics.js stalled: a promise never settled' });
  process.exit(1);
});

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`basics.js failed: ${err && err.stack ? err.stack : err}\n`);
    emit({ error: String(err && err.message ? err.message : err), code: err && err.code });
    process.exit(1);
  },
);
