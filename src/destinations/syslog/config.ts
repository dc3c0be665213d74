import { z } from 'zod';
import { address, backoffSchema, duration, queueSchema, size, tlsClientSchema } from '../../config/types.js';

export const syslogDestinationSchema = z
  .strictObject({
    type: z.literal('syslog'),
    address: address().describe('The receiver, as host:port.'),
    transport: z
      .enum(['tcp', 'udp'])
      .default('tcp')
      .describe('`tcp` (with `tls` for RFC 5425) or `udp` (RFC 5426, no delivery guarantee at all).'),
    tls: tlsClientSchema.optional(),
    framing: z
      .enum(['octet_counting', 'lf'])
      .default('octet_counting')
      .describe(
        'TCP framing (RFC 6587). Octet counting carries any byte, newlines included; `lf` is for old receivers.',
      ),
    format: z
      .enum(['raw', 'rfc5424', 'rfc3164'])
      .default('raw')
      .describe(
        '`raw`: each message exactly as received. `rfc5424` or `rfc3164`: parsed and written anew in that format.',
      ),
    max_message_size: size()
      .prefault('64KiB')
      .describe('Longer messages are cut to this length when sent over UDP (at most 65507 bytes fit a datagram).'),
    connect_timeout: duration().prefault('10s').describe('Give up a connection attempt after this long.'),
    batch_size: z.int().positive().default(1000).describe('Most records written in one socket write.'),
    backoff: backoffSchema.prefault({}),
    queue: queueSchema.prefault({}),
  })
  .describe(
    'Forwards to a syslog receiver over TCP, TLS or UDP. Records leave the queue once the kernel has taken them: ' +
      'plain syslog has no acknowledgement.',
  );
