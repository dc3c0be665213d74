import { readFileSync } from 'node:fs';
import type { ConnectionOptions, NatsConnection } from '@nats-io/transport-node';
import { z } from 'zod';
import { duration, tlsClientSchema } from '../config/types.js';

/**
 * What the NATS source and destination share: the servers, TLS and credentials, and a connect that
 * loads the client library only when a config uses NATS.
 */

const server = z
  .string()
  .regex(/^((nats|tls):\/\/)?[^\s/]+(:\d+)?$/, 'a NATS server URL: nats://host:port or tls://host:port');

export const natsConnectionFields = {
  servers: z
    .array(server)
    .min(1)
    .describe(
      'The NATS servers (`nats://host:4222`); more than one for failover: a connection tries them in turn, and ' +
        'the cluster tells the client of its other members.',
    ),
  tls: tlsClientSchema
    .optional()
    .describe('TLS towards the servers: the CA, a client certificate when the server requires one.'),
  token: z
    .string()
    .optional()
    .describe('An authentication token. Use `${VAR}` or `token_file` to keep it out of this file.'),
  token_file: z.string().optional().describe('File holding the token (trailing whitespace ignored); read at start.'),
  user: z.string().optional().describe('User name, with `password`.'),
  password: z.string().optional().describe('Password of `user`. Use `${VAR}` to keep it out of this file.'),
  nkey_seed_file: z.string().optional().describe('File holding an NKey seed (`SU…`): the server knows its public key.'),
  creds_file: z
    .string()
    .optional()
    .describe('A `.creds` file (user JWT and NKey seed) for servers run in decentralised JWT mode.'),
  connect_timeout: duration().prefault('10s').describe('Give up a connection attempt after this long.'),
};

type ConnFields = z.output<z.ZodObject<typeof natsConnectionFields>>;

/** One way of authenticating, at most; for `.refine` of the schemas that spread the fields. */
export function oneCredential(c: Partial<ConnFields>): boolean {
  const kinds = [
    c.token !== undefined || c.token_file !== undefined,
    c.user !== undefined,
    c.nkey_seed_file,
    c.creds_file,
  ];
  if (c.token !== undefined && c.token_file !== undefined) return false;
  if ((c.user === undefined) !== (c.password === undefined)) return false;
  return kinds.filter(Boolean).length <= 1;
}

export const ONE_CREDENTIAL =
  'give one way of authenticating: token (or token_file), user with password, nkey_seed_file or creds_file';

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
