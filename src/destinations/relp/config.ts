import { z } from 'zod';
import { address, backoffSchema, duration, queueSchema, tlsClientSchema } from '../../config/types.js';

export const relpDestinationSchema = z
  .strictObject({
    type: z.literal('relp'),
    address: address().describe('The RELP server (rsyslog imrelp, another sluice), as host:port.'),
    tls: tlsClientSchema.optional(),
    format: z
      .enum(['raw', 'rfc5424', 'rfc3164'])
      .default('raw')
      .describe('`raw`: each message exactly as received. `rfc5424` or `rfc3164`: parsed and written anew.'),
    window: z
      .int()
      .min(1)
      .max(65535)
      .default(1024)
      .describe('Messages sent and not yet answered at once (one batch from the queue).'),
    connect_timeout: duration()
      .prefault('10s')
      .describe('Give up a connection attempt (and its `open`) after this long.'),
    response_timeout: duration()
      .prefault('60s')
      .describe('A message not answered in this long breaks the connection; it is sent again.'),
    backoff: backoffSchema.prefault({}),
    queue: queueSchema.prefault({}),
  })
  .describe(
    "Forwards over RELP (librelp 1.11 semantics). A message leaves the queue only on the server's `200 OK`; any " +
      'other answer, a timeout or a broken connection ' +
      'means it is sent again, never dropped.',
  );
