import { z } from 'zod';
import { duration, facilityName, severityName, size } from '../../config/types.js';

export const fileSourceSchema = z
  .strictObject({
    type: z.literal('file'),
    paths: z
      .array(z.string())
      .min(1)
      .describe('Files to follow: paths or globs (`/var/log/app/*.log`). Files that appear later are picked up.'),
    exclude: z
      .array(z.string())
      .default([])
      .describe('Globs of paths to leave alone, such as rotated copies (`/var/log/app/*.gz`).'),
    read_from: z
      .enum(['beginning', 'end'])
      .default('beginning')
      .describe(
        'Where to start in a file that has no checkpoint yet and exists when sluice starts. Files that appear while ' +
          'sluice runs are always read from the beginning.',
      ),
    max_line_length: size()
      .prefault('64KiB')
      .describe('Longer lines are cut to this length (counted) and the rest of the line is skipped.'),
    flush_timeout: duration()
      .prefault('5s')
      .describe('A last line without its newline is held this long for the rest to arrive, then sent as it is.'),
    poll_interval: duration()
      .prefault('1s')
      .describe('How often each file is checked for growth, rotation and truncation, besides file system events.'),
    checkpoint_interval: duration()
      .prefault('1s')
      .describe('Most time between two checkpoint writes while lines flow.'),
    format: z
      .enum(['text', 'syslog'])
      .default('text')
      .describe(
        '`text`: each line is a message. `syslog`: each line is a syslog message (a file written by another syslog ' +
          'daemon).',
      ),
    lenient: z.boolean().default(false).describe('With `format: syslog`, parse with leniency.'),
    app_name: z
      .string()
      .optional()
      .describe('APP-NAME of text lines when they are sent as syslog. Default: the file name without its extension.'),
    facility: facilityName.default('user').describe('Facility of text lines.'),
    severity: severityName.default('notice').describe('Severity of text lines.'),
  })
  .describe(
    'Follows log files. Files are known by device and inode plus a fingerprint of their first bytes, so a reused ' +
      'inode never inherits an old offset. ' +
      'Rotation by rename and by copytruncate loses no line. Checkpoints live under `state_dir/checkpoints/` and ' +
      'advance only past lines that every queue has accepted.',
  );
