'use strict';
/**
 * ably-js annotations against the emulator (test_ably_js.py): one Realtime
 * client with a clientId publishes a message, annotates it over realtime and
 * over REST, deletes one annotation, and reports what its annotation and
 * message listeners saw and what `annotations.get` pages through.
 *
 * argv[2]: {endpoint, port, key, binary, channel}; the channel must be in a
 * namespace with the mutableMessages rule.
 */
const { Ably, config, options, emit, within } = require('./common');

function describeAnnotation(a) {
  return {
    action: a.action,
    type: a.type,
    name: a.name === undefined ? null : a.name,
    clientId: a.clientId === undefined ? null : a.clientId,
    messageSerial: a.messageSerial,
    serial: a.serial,
  };
}

/** A queue of events with `next()` resolving to the next one. */
function queue() {
  const items = [];
  const waiters = [];
  return {
    push(item) {
      const waiter = waiters.shift();
      if (waiter) waiter(item);
      else items.push(item);
    },
    next(what) {
      if (items.length) return Promise.resolve(items.shift());
      return within(10000, what, new Promise((resolve) => waiters.push(resolve)));
    },
  };
}

async function main() {
  const cfg = config();
  const realtime = new Ably.Realtime(options(cfg, { key: cfg.key, clientId: 'js-annotator' }));
  const rest = new Ably.Rest(options(cfg, { key: cfg.key, clientId: 'js-rest' }));
  try {
    const channel = realtime.channels.get(cfg.channel, {
      modes: ['publish', 'subscribe', 'annotation_publish', 'annotation_subscribe'],
    });
    const messages = queue();
    const annotations = queue();
    await channel.subscribe((m) => messages.push(m));
    await channel.annotations.subscribe((a) => annotations.push(a));
    await channel.publish('reacted-to', 'hello');
    const message = await messages.next('the message');

    await channel.annotations.publish(message, { type: 'reaction:distinct.v1', name: 'up' });
    const viaRealtime = describeAnnotation(await annotations.next('realtime annotation'));
    const firstSummary = await messages.next('first summary');

    await rest.channels
      .get(cfg.channel)
      .annotations.publish(message.serial, { type: 'reaction:distinct.v1', name: 'up' });
    const viaRest = describeAnnotation(await annotations.next('REST annotation'));
    const secondSummary = await messages.next('second summary');

    await channel.annotations.delete(message, { type: 'reaction:distinct.v1', name: 'up' });
    const deleted = describeAnnotation(await annotations.next('delete'));
    const thirdSummary = await messages.next('third summary');

    let page = await channel.annotations.get(message.serial, { limit: 2 });
    const pages = [];
    for (;;) {
      pages.push(page.items.map(describeAnnotation));
      if (!page.hasNext()) break;
      page = await page.next();
    }
    const history = await channel.history({ limit: 1 });
    emit({
      messageSerial: message.serial,
      viaRealtime,
      viaRest,
      deleted,
      summaries: [firstSummary, secondSummary, thirdSummary].map((m) => ({
        action: m.action,
        serial: m.serial,
        summary: m.annotations.summary,
      })),
      pages,
      historySummary: history.items[0].annotations.summary,
    });
  } finally {
    realtime.close();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`annotations.js failed: ${err && err.stack ? err.stack : err}\n`);
    emit({ error: String(err && err.message ? err.message : err), code: err && err.code });
    process.exit(1);
  },
);
