import { z } from 'zod';
import { duration } from '../../config/types.js';

export const kernelSourceSchema = z
  .strictObject({
    type: z.literal('kernel'),
    device: z.string().default('/dev/kmsg').describe('The kernel log device.'),
    read_from: z
      .enum(['beginning', 'end'])
      .default('beginning')
      .describe(
        'Where to start when there is no checkpoint of this boot: `beginning` takes every record the kernel still ' +
          'holds (since boot, unless its buffer wrapped), `end` only new ones.',
      ),
    poll_interval: duration()
      .prefault('250ms')
      .describe('How often the device is read when it had nothing (kernel messages are few; reads never block).'),
    checkpoint_interval: duration()
      .prefault('1s')
      .describe('Most time between two writes of the checkpoint while records flow.'),
  })
  .describe(
    'Reads the kernel log from /dev/kmsg: one record per message, with its priority, sequence number and time, and ' +
      'its device dictionary as `[kmsg@32473 SUBSYSTEM="…" DEVICE="…"]`. The checkpoint is the boot id and the ' +
      'sequence number of the last record every queue committed; a restart in the same boot resumes after it, a new ' +
      'boot starts from the beginning. Records the kernel overwrote before they were read (its buffer is small) are ' +
      'counted as `dropped{reason="kernel_overwritten"}` and logged. On systemd hosts the journal has the kernel ' +
      'messages too (`_TRANSPORT=kernel`): use this source or a `journald` source, not both, or each message comes ' +
      'twice. Needs read access to /dev/kmsg (root, or CAP_SYSLOG with `kernel.dmesg_restrict`).',
  );
