import { z } from 'zod';
import { address, duration, size, tlsServerSchema } from '../../config/types.js';

export const syslogTcpSourceSchema = z
  .strictObject({
    type: z.literal('syslog_tcp'),
    address: address().describe('Where to listen, as host:port.'),
    tls: tlsServerSchema.optional(),
    max_message_size: size().prefault('64KiB').describe('Longest message kept, in bytes.'),
    oversize: z
      .enum(['truncate', 'drop'])
      .default('truncate')
      .describe(
        'What to do with a longer message: cut it to `max_message_size`, or drop it. Both are counted; the ' +
          'connection stays open.',
      ),
    max_connections: z
      .int()
      .positive()
      .default(256)
      .describe('Connections open at once. Further connections are closed at once and counted.'),
    idle_timeout: duration()
      .prefault('1h')
      .describe(
        'Close a connection that has sent nothing for this long; `0` keeps idle connections forever. Senders ' +
          'reconnect on their next message.',
      ),
    lenient: z.boolean().default(false).describe('Parse with leniency for common real-world deviations.'),
  })
  .describe(
    'Syslog over TCP, optionally TLS (RFC 5425). Framing is detected per connection (RFC 6587): octet counting when ' +
      'the first byte is a digit, LF-terminated otherwise. ' +
      'A full queue pauses reading from the sockets (flow control); plain TCP syslog has no acknowledgements.',
  );
