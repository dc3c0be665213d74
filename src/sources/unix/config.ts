import { z } from 'zod';
import { size } from '../../config/types.js';

export const unixSourceSchema = z
  .strictObject({
    type: z.literal('unix'),
    path: z.string().min(1).describe("Where the socket is made: `/dev/log` for the host's syslog(3) callers."),
    mode: z
      .string()
      .regex(/^0?[0-7]{3}$/, 'an octal mode such as 0666')
      .default('0666')
      .describe('Permissions of the socket file (octal). Anyone who may write to it may log.'),
    group: z
      .union([z.string().min(1), z.int().nonnegative()])
      .optional()
      .describe(
        'Group of the socket file (a name from /etc/group, or a number); with `mode: 0660`, only its members may log.',
      ),
    max_message_size: size().prefault('64KiB').describe('Longest message kept, in bytes.'),
    oversize: z
      .enum(['truncate', 'drop'])
      .default('truncate')
      .describe('What to do with a longer message: cut it to `max_message_size`, or drop it. Both are counted.'),
    max_connections: z
      .int()
      .positive()
      .default(1024)
      .describe('Connections open at once (each process that logs holds one). Further ones are closed and counted.'),
    lenient: z.boolean().default(true).describe('Parse with leniency: local senders rarely follow an RFC.'),
  })
  .describe(
    "The classic `/dev/log`: a Unix **stream** socket. glibc's syslog(3) ends each message with a NUL byte, " +
      'util-linux `logger -u` with LF; octet counting is taken too (detected per connection). Node.js has no Unix ' +
      "datagram sockets, so senders that only speak datagrams (musl libc's syslog(3), `logger --socket-type " +
      'dgram`) cannot use it: on such hosts keep journald or another daemon on /dev/log. A stale socket file left by ' +
      'a crash is replaced; a path where a live process listens is an error that names it. Local senders cannot be ' +
      'acknowledged: a full queue pauses reading (flow control), as for TCP.',
  );
