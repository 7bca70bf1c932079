'use strict';
/**
 * Helpers shared by the interop scripts: the Ably client options for the
 * emulator under test, payload descriptions that survive JSON, and a JSON
 * line writer for stdout (the only thing the pytest side parses).
 *
 * Every script takes one argument: a JSON object with at least
 * {endpoint, port, key, binary}. ably-js logs go to stderr so stdout stays
 * machine-readable.
 */
const Ably = require('ably');

function config() {
  const raw = process.argv[2];
  if (!raw) {
    throw new Error('usage: node <script> \'{"endpoint":..,"port":..,"key":..,"binary":..}\'');
  }
  return JSON.parse(raw);
}

/** Client options pointing at the emulator; `extra` adds auth and the rest. */
function options(cfg, extra) {
  return Object.assign(
    {
      endpoint: cfg.endpoint,
      port: cfg.port,
      tls: false,
      useBinaryProtocol: Boolean(cfg.binary),
      logLevel: 1,
      logHandler: (msg) => process.stderr.write(`ably-js: ${msg}\n`),
      ...(cfg.transports ? { transports: cfg.transports } : {}),
    },
    extra,
  );
}

/** A payload as {type, value}: string, json, binary (hex) or null. */
function describeData(data) {
  if (data === undefined || data === null) return { type: 'null', value: null };
  if (typeof data === 'string') return { type: 'string', value: data };
  if (Buffer.isBuffer(data) || data instanceof ArrayBuffer || ArrayBuffer.isView(data)) {
    return { type: 'binary', value: Buffer.from(data).toString('hex') };
  }
  return { type: 'json', value: data };
}

/** The inverse of describeData, for payloads the pytest side asks us to publish. */
function makeData(described) {
  if (!described || described.type === 'null') return undefined;
  if (described.type === 'binary') return Buffer.from(described.value, 'hex');
  return described.value;
}

function describeMessage(m) {
  return {
    id: m.id,
    name: m.name,
    clientId: m.clientId,
    connectionId: m.connectionId,
    encoding: m.encoding === undefined ? null : m.encoding,
    data: describeData(m.data),
  };
}

function describeMember(p) {
  return {
    clientId: p.clientId,
    connectionId: p.connectionId,
    action: p.action,
    data: describeData(p.data),
  };
}

function emit(obj) {
  process.stdout.write(`${JSON.stringify(obj)}\n`);
}

/** Resolve with `promise`, or reject after `ms` naming `what`. */
function within(ms, what, promise) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

module.exports = {
  Ably,
  config,
  options,
  describeData,
  makeData,
  describeMessage,
  describeMember,
  emit,
  within,
};
