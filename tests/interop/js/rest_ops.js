'use strict';
/**
 * ably-js REST operations for the tests of OUR client (test_our_client_rest.py):
 * one operation per run, named by `op` in the config; prints one JSON object.
 *
 * argv[2]: {endpoint, port, key, binary, op, ...}
 *   op 'sign':     {tokenParams} -> {json: JSON.stringify(tokenRequest), request}
 *                  (createTokenRequest with the key; tokenParams may fix nonce/timestamp)
 *   op 'exchange': {tokenRequest, channel} -> {clientId, token, published}: a Rest client
 *                  whose authCallback hands back the given TokenRequest authorizes and
 *                  publishes one message
 *   op 'publish':  {channel, cipherKey?, messages: [{name, data: {type, value}}]}
 *   op 'history':  {channel, cipherKey?, limit?} -> {items: [message descriptions]}, oldest
 *                  first, every page followed
 * `cipherKey` is hex; the channel then uses AES-CBC with that key (ably-js defaults).
 */
const { Ably, config, options, makeData, describeMessage, emit } = require('./common');

function channelOptions(cfg) {
  return cfg.cipherKey ? { cipher: { key: Buffer.from(cfg.cipherKey, 'hex') } } : undefined;
}

const ops = {
  async sign(cfg) {
    const rest = new Ably.Rest(options(cfg, { key: cfg.key }));
    const request = await rest.auth.createTokenRequest(cfg.tokenParams);
    return { json: JSON.stringify(request), request };
  },
  async exchange(cfg) {
    let callbacks = 0;
    const authCallback = (params, callback) => {
      callbacks += 1;
      callback(null, cfg.tokenRequest);
    };
    const rest = new Ably.Rest(options(cfg, { authCallback }));
    const details = await rest.auth.authorize();
    await rest.channels.get(cfg.channel).publish('via-js-token', 'exchanged by ably-js');
    return { clientId: details.clientId || null, token: details.token, callbacks };
  },
  async publish(cfg) {
    const rest = new Ably.Rest(options(cfg, { key: cfg.key }));
    const channel = rest.channels.get(cfg.channel, channelOptions(cfg));
    for (const m of cfg.messages) {
      await channel.publish(m.name, makeData(m.data));
    }
    return { published: cfg.messages.length };
  },
  async history(cfg) {
    const rest = new Ably.Rest(options(cfg, { key: cfg.key }));
    const channel = rest.channels.get(cfg.channel, channelOptions(cfg));
    const items = [];
    let page = await channel.history({ direction: 'forwards', limit: cfg.limit || 100 });
    for (;;) {
      items.push(...page.items.map(describeMessage));
      if (!page.hasNext()) break;
      page = await page.next();
    }
    return { items };
  },
};

async function main() {
  const cfg = config();
  const op = ops[cfg.op];
  if (!op) throw new Error(`unknown op ${cfg.op}`);
  emit(await op(cfg));
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`rest_ops.js failed: ${err && err.stack ? err.stack : err}\n`);
    emit({ error: String(err && err.message ? err.message : err), code: err && err.code });
    process.exit(1);
  },
);
