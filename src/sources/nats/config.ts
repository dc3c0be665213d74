import { z } from 'zod';
import { backoffSchema, duration } from '../../config/types.js';
import { natsConnectionFields, ONE_CREDENTIAL, oneCredential } from '../../net/nats-config.js';

const natsName = z.string().regex(/^[^\s.*>/\\]+$/, 'no spaces, ".", "*", ">", "/" or "\\"');

export const natsSourceSchema = z
  .strictObject({
    type: z.literal('nats'),
    ...natsConnectionFields,
    stream: natsName.describe('The JetStream stream to read.'),
    durable: natsName.describe(
      'The durable pull consumer: sluice processes that name the same one share the stream between them.',
    ),
    filter_subject: z.string().optional().describe('Only messages of these subjects (wildcards allowed). Absent: all.'),
    max_ack_pending: z
      .int()
      .positive()
      .default(10_000)
      .describe(
        'Messages delivered and not yet acknowledged, per consumer (all processes together): the flow control. ' +
          'A commit groups what arrived during the last fsync, so this bounds the rate: keep it above rate × 50 ms.',
      ),
    ack_wait: duration()
      .prefault('30s')
      .describe(
        'JetStream delivers a message again (to any process of the consumer) when it was not acknowledged in this ' +
          'long. A process restarted within it acknowledges what it had committed, so that nothing it wrote is ' +
          'delivered elsewhere.',
      ),
    batch: z
      .int()
      .min(1)
      .max(10_000)
      .default(1000)
      .describe(
        'Messages asked for at a time; more are asked for when three quarters have arrived. This many messages can ' +
          'wait in memory ahead of the queue: lower it for large messages.',
      ),
    lenient: z.boolean().default(false).describe('Parse with leniency for common real-world deviations.'),
    backoff: backoffSchema.prefault({ initial: '200ms', max: '10s' }),
  })
  .refine(oneCredential, { message: ONE_CREDENTIAL })
  .describe(
    'Reads a NATS JetStream stream through a durable pull consumer (made when missing; `max_ack_pending`, ' +
      '`ack_wait` and `filter_subject` updated when they differ). A message is acknowledged only once it is durably ' +
      'in every queue it feeds; until then JetStream keeps it and delivers it again. docs/scale-out.md.',
  );
