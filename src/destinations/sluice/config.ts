import { z } from 'zod';
import { backoffSchema, duration, queueSchema, size, tlsClientSchema } from '../../config/types.js';

export const sluiceDestinationSchema = z
  .strictObject({
    type: z.literal('sluice'),
    urls: z
      .array(z.string().regex(/^wss?:\/\/[^\s/]+(\/.*)?$/, 'a ws:// or wss:// URL'))
      .min(1)
      .describe(
        'Central servers, tried in order: on a failure the next one is used (failover), round robin. The path ' +
          'defaults to /sluice/v1.',
      ),
    token: z
      .string()
      .optional()
      .describe('Bearer token for the server. Use `${VAR}` or `token_file` to keep it out of this file.'),
    token_file: z.string().optional().describe('File holding the token (trailing whitespace ignored); read at start.'),
    tls: tlsClientSchema.optional().describe('For wss:// URLs: the CA, a client certificate for mutual TLS.'),
    window: z
      .int()
      .min(1)
      .max(1024)
      .default(16)
      .describe(
        'Batches sent and not yet acknowledged at once. More hides more latency; the server may ask for fewer.',
      ),
    batch_size: z.int().positive().default(2000).describe('Most records in one batch frame.'),
    batch_bytes: size().prefault('1MiB').describe('A batch is closed when its records reach this many bytes.'),
    compression: z
      .enum(['deflate', 'none'])
      .default('deflate')
      .describe('Compress batches when the server agrees (negotiated in the handshake). Saves bandwidth; costs CPU.'),
    connect_timeout: duration()
      .prefault('10s')
      .describe('Give up a connection attempt (TCP, TLS, upgrade and hello) after this long.'),
    ack_timeout: duration()
      .prefault('60s')
      .describe(
        'A connection whose oldest batch is not acknowledged in this long is closed and its batches sent again.',
      ),
    backoff: backoffSchema.prefault({}),
    terminal_backoff: duration()
      .prefault('5m')
      .describe(
        'Wait after a terminal error (a refused token, no common protocol version): it is logged loudly and retried ' +
          'this rarely, never in a tight loop.',
      ),
    queue: queueSchema.prefault({}),
  })
  .refine((c) => !(c.token && c.token_file), { message: 'give token or token_file, not both' })
  .describe(
    'Ships to a sluice central server over the sluice protocol (WebSocket, docs/protocol.md). Records leave the ' +
      'queue only when the server acknowledges ' +
      'that they are durably in its queues; unacknowledged ones are sent again after a reconnect, and the server ' +
      'recognises repeats. Use a reliable queue: ' +
      'its sequence numbers survive restarts, so repeats after a crash are recognised too.',
  );
