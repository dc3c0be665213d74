import { z } from 'zod';
import { address, duration, size, tlsServerSchema } from '../../config/types.js';

export const relpSourceSchema = z
  .strictObject({
    type: z.literal('relp'),
    address: address().describe("Where to listen, as host:port (RELP's usual port is 2514)."),
    tls: tlsServerSchema.optional(),
    max_message_size: size()
      .prefault('128KiB')
      .describe(
        "Largest DATA of a frame (rsyslog's default maxDataSize is 128k); a larger frame closes the connection.",
      ),
    max_connections: z
      .int()
      .positive()
      .default(256)
      .describe('Connections open at once; more are closed at once and counted.'),
    idle_timeout: duration()
      .prefault('1h')
      .describe('Close a connection that sent nothing for this long. `0s`: never.'),
    lenient: z.boolean().default(false).describe('Parse with leniency for common real-world deviations.'),
  })
  .describe(
    "RELP (the Reliable Event Logging Protocol of rsyslog's omrelp and librelp). Each message is answered `200 OK` " +
      'only once it is durably in every queue it feeds ' +
      '(imrelp answers on receipt); a message that cannot be committed gets `500`, and the sender keeps it and sends ' +
      'it again.',
  );
