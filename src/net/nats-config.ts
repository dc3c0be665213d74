import { z } from 'zod';
import { duration, tlsClientSchema } from '../config/types.js';

/**
 * The connection settings the NATS source and destination share (servers, TLS, credentials), for
 * their config schemas. Apart from net/nats.ts so that a running NATS source or destination, which
 * imports that one, does not load zod (the config is validated in a child process of its own).
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

export type ConnFields = z.output<z.ZodObject<typeof natsConnectionFields>>;

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
