import { z } from 'zod';
import { duration, queueSchema } from '../../config/types.js';
import { unknownMacros } from '../../template/path-template.js';

export const fileDestinationSchema = z
  .strictObject({
    type: z.literal('file'),
    path: z
      .string()
      .min(1)
      .superRefine((v, ctx) => {
        const unknown = unknownMacros(v);
        if (unknown.length)
          ctx.addIssue({
            code: 'custom',
            message: `unknown macro ${unknown.map((n) => `\${${n}}`).join(', ')}; see docs/configuration.md for the list`,
          });
        if (v.endsWith('/')) ctx.addIssue({ code: 'custom', message: 'names a directory; add a file name' });
      })
      .describe(
        'Path template, such as `var/log/${HOST}/${PROGRAM}.log`. The macros are listed in docs/configuration.md. ' +
          'Values are made safe before use, so a hostname like `../../etc` can never leave the directory before the ' +
          'first macro.',
      ),
    format: z
      .enum(['raw', 'rfc5424', 'rfc3164'])
      .default('raw')
      .describe(
        'How each line is written: the message as received, or parsed and written in RFC 5424 or RFC 3164 form.',
      ),
    fsync: z
      .boolean()
      .default(true)
      .describe(
        'fsync each batch before its records leave the queue, so an acknowledged record survives a power cut. Many ' +
          'batches share one fsync.',
      ),
    exactly_once: z
      .boolean()
      .default(false)
      .describe(
        "Write a record that carries a stream position (a line of a file an agent follows, a record from an agent's " +
          'reliable queue) at most once per file, even across crashes: ' +
          'each file gets a `<file>.sluice-state` beside it with its committed size and the last position of every ' +
          'stream; a crash between a write and that state is undone at the next open ' +
          '(the file is cut back to the committed size and the records written again). Costs a small atomic write ' +
          'per batch. Use it on a central server.',
      ),
    exactly_once_retention: duration()
      .prefault('7d')
      .describe(
        'With `exactly_once`: forget a stream nothing was written from for this long (a followed file rotated away, ' +
          'an agent gone), so that `<file>.sluice-state` stays small. ' +
          'A record of a forgotten stream that still comes (an agent back after a longer outage, resending what it ' +
          'was never told was written) is written again: at worst a duplicate, never a loss.',
      ),
    max_open_files: z
      .int()
      .positive()
      .default(256)
      .describe('Files kept open at once; the least recently used is closed first.'),
    idle_close: duration().prefault('1m').describe('Close a file nothing was written to for this long.'),
    file_mode: z
      .string()
      .regex(/^0?[0-7]{3}$/, 'expected an octal mode such as 0640')
      .default('0640')
      .describe('Permissions of new files (octal).'),
    dir_mode: z
      .string()
      .regex(/^0?[0-7]{3}$/, 'expected an octal mode such as 0750')
      .default('0750')
      .describe('Permissions of new directories (octal).'),
    queue: queueSchema.prefault({}),
  })
  .describe('Appends one message per line to files named by a template. Directories are created as needed.');
