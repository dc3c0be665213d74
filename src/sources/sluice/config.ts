import { z } from 'zod';
import { address, duration, size, tlsServerSchema } from '../../config/types.js';

export const sluiceSourceSchema = z
  .strictObject({
    type: z.literal('sluice'),
    address: address().describe('Where to listen for agents, as host:port (WebSocket; `wss` with `tls`).'),
    tls: tlsServerSchema.optional(),
    tokens: z
      .array(z.string().min(16, 'a token has at least 16 characters'))
      .min(1)
      .describe(
        'Bearer tokens agents may present; several, so that tokens can be rotated without a gap. Compared in ' +
          'constant time. ' +
          'Use `${VAR}` to keep them out of the file. An upgrade without a valid token is refused (401) before any ' +
          'data is read.',
      ),
    max_frame_size: size()
      .prefault('8MiB')
      .describe(
        'Largest batch frame accepted (compressed size, and uncompressed size of its records); a larger one closes ' +
          'the connection (4002).',
      ),
    max_inflight_bytes: size()
      .prefault('32MiB')
      .describe(
        'Bytes of batches received from one connection and not yet committed; past it the server stops reading that ' +
          'connection until commits catch up.',
      ),
    max_connections: z.int().positive().default(1024).describe('Agents connected at once; further upgrades get 503.'),
    handshake_timeout: duration()
      .prefault('10s')
      .describe(
        'Time an agent has to send its HTTP upgrade (headers included) and then its hello; slower clients are cut ' +
          'off (slowloris).',
      ),
    idle_timeout: duration()
      .prefault('5m')
      .describe('Close a connection that sent nothing, not even a WebSocket ping, for this long. `0s`: never.'),
  })
  .describe(
    'The central server end of the sluice protocol (docs/protocol.md): agents send batches over WebSocket; each ' +
      'batch is acknowledged only once it is ' +
      'durably committed to every queue it feeds, and batches an agent sends again are recognised by (sender, ' +
      'sequence) and not queued twice.',
  );
