import { readFileSync } from 'node:fs';
import type { ConnectionOptions, NatsConnection } from '@nats-io/transport-node';
import type { ConnFields } from './nats-config.js';

/**
 * What the NATS source and destination share at run time: a connect that loads the client library
 * only when a config uses NATS (their settings: nats-config.ts).
 */

/** The client options for `c` (files are read at each connection: a missing one fails it, naming it). */
function natsOptions(core: typeof import('@nats-io/transport-node'), c: ConnFields, name: string): ConnectionOptions {
  const opts: ConnectionOptions = {
    servers: c.servers,
    name,
    timeout: c.connect_timeout,
    // sluice reconnects itself, with the destination's backoff; the client must not keep records
    // in its own buffer across a reconnect that sluice does not know of.
    reconnect: false,
    noEcho: true,
  };
  const token = c.token_file ? readFileSync(c.token_file, 'utf8').trimEnd() : c.token;
  if (token !== undefined) opts.token = token;
  if (c.user !== undefined) {
    opts.user = c.user;
    opts.pass = c.password;
  }
  if (c.nkey_seed_file)
    opts.authenticator = core.nkeyAuthenticator(
      new TextEncoder().encode(readFileSync(c.nkey_seed_file, 'utf8').trim()),
    );
  if (c.creds_file) opts.authenticator = core.credsAuthenticator(readFileSync(c.creds_file));
  if (c.tls) {
    const t = c.tls;
    opts.tls = {
      ...(t.ca ? { caFile: t.ca } : {}),
      ...(t.cert ? { certFile: t.cert } : {}),
      ...(t.key ? { keyFile: t.key } : {}),
      ...(t.verify === false ? { rejectUnauthorized: false } : {}),
      ...(t.server_name ? { servername: t.server_name } : {}),
    } as ConnectionOptions['tls'];
  }
  return opts;
}

/** Connects with the options of `c` (loading the client on first use). */
export async function natsConnect(c: ConnFields, name: string): Promise<NatsConnection> {
  const core = await import('@nats-io/transport-node');
  return core.connect(natsOptions(core, c, name));
}

/** Nanoseconds, as JetStream's API counts durations, from milliseconds. */
export const nanos = (ms: number): number => ms * 1_000_000;

/** A subject token from any text: no `.`, `*`, `>`, whitespace or control characters, never empty. */
export function subjectToken(value: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: control characters are what this replaces
  const v = value.replace(/[.*>\s\x00-\x1f\x7f]/g, '_');
  return v === '' ? '_' : v;
}
