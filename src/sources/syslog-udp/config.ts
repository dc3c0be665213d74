import { z } from 'zod';
import { address, size } from '../../config/types.js';

export const syslogUdpSourceSchema = z
  .strictObject({
    type: z.literal('syslog_udp'),
    address: address().describe(
      'Where to listen, as host:port. Use 0.0.0.0:514 or [::]:514 to listen on every interface.',
    ),
    max_message_size: size()
      .prefault('64KiB')
      .describe('Longest message kept. A datagram cannot exceed 65507 bytes, so larger values change nothing.'),
    oversize: z
      .enum(['truncate', 'drop'])
      .default('truncate')
      .describe('What to do with a longer datagram: cut it to `max_message_size`, or drop it. Both are counted.'),
    receive_buffer_size: size()
      .prefault('4MiB')
      .describe(
        'SO_RCVBUF for the socket: a kernel buffer that absorbs bursts while the agent is busy (rsyslog and ' +
          'syslog-ng users raise theirs for the same reason). ' +
          'The kernel caps it at net.core.rmem_max (a warning says so); what the kernel still drops is counted as ' +
          '`dropped{reason="kernel_buffer"}`.',
      ),
    lenient: z
      .boolean()
      .default(false)
      .describe('Parse with leniency for common real-world deviations (see docs/configuration.md, "Parsing").'),
  })
  .describe(
    'Syslog over UDP (RFC 5426): one message per datagram. UDP cannot be acknowledged or slowed down, so a full ' +
      'queue drops and counts.',
  );
