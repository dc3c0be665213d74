import { z } from 'zod';
import { backoffSchema, duration, queueSchema, size } from '../../config/types.js';
import { natsConnectionFields, ONE_CREDENTIAL, oneCredential } from '../../net/nats-config.js';

export const natsStreamSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[^\s.*>/\\]+$/, 'a stream name has no spaces, ".", "*", ">", "/" or "\\"')
      .describe('The stream to create when no stream captures the subject.'),
    subjects: z
      .array(z.string().min(1))
      .min(1)
      .optional()
      .describe(
        "Subjects it captures. Default: the subject template's literal head followed by `>` (`logs.${HOST}` → " +
          '`logs.>`).',
      ),
    storage: z.enum(['file', 'memory']).default('file').describe('Where the servers keep it.'),
    replicas: z.int().min(1).max(5).default(1).describe('Copies across the cluster (3 survives the loss of a server).'),
    max_age: duration().prefault('0s').describe('Messages older than this are removed. `0s`: kept until max_bytes.'),
    max_bytes: size().optional().describe('The most the stream holds; the oldest messages go first. Absent: no limit.'),
    duplicate_window: duration()
      .prefault('2m')
      .describe('How long the stream remembers a `Nats-Msg-Id` to drop a publish made again (JetStream default 2m).'),
  })
  .describe('Creates the stream at start when no stream captures the subject (otherwise start reports the subject).');

export const natsDestinationSchema = z
  .strictObject({
    type: z.literal('nats'),
    ...natsConnectionFields,
    subject: z
      .string()
      .min(1)
      .describe(
        'Subject of each record, a template (`logs.${HOST}.${PROGRAM}`): each macro value becomes one subject ' +
          'token (`.`, `*`, `>`, spaces and control characters become `_`).',
      ),
    format: z
      .enum(['raw', 'rfc5424', 'rfc3164'])
      .default('raw')
      .describe('The body of each NATS message: the record as received (`raw`), or written anew.'),
    max_inflight: z
      .int()
      .min(1)
      .max(65535)
      .default(512)
      .describe('Publishes waiting for their PubAck at once. Records leave the queue in order, on their PubAck.'),
    msg_id: z
      .boolean()
      .default(true)
      .describe(
        'Set `Nats-Msg-Id` to an id that survives restarts (the record stream position, or the reliable ' +
          "queue's id and sequence number), so that the stream drops a publish made again after a crash or a " +
          'timeout within its duplicate window.',
      ),
    ack_timeout: duration()
      .prefault('5s')
      .describe('A publish without its PubAck in this long ends the connection; it and those after it are sent again.'),
    create_stream: natsStreamSchema.optional(),
    backoff: backoffSchema.prefault({ initial: '200ms', max: '10s' }),
    queue: queueSchema.prefault({}),
  })
  .refine(oneCredential, { message: ONE_CREDENTIAL })
  .describe(
    'Publishes to NATS JetStream, one record per message, with a window of publishes in flight. A record leaves ' +
      'the queue only on its PubAck (the stream has stored it); a publish made again carries the same ' +
      '`Nats-Msg-Id`, so the stream stores it once. docs/scale-out.md.',
  );
