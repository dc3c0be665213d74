import { z } from 'zod';
import { duration, facilityName, severityName, size } from '../../config/types.js';

/** A journal field name, as journald makes them: upper-case letters, digits and `_`. */
const fieldName = z.string().regex(/^[A-Z0-9_]{1,64}$/, 'journal field names are upper-case letters, digits and "_"');

export const journaldSourceSchema = z
  .strictObject({
    type: z.literal('journald'),
    read_from: z
      .enum(['beginning', 'end'])
      .default('end')
      .describe(
        'Where to start the first time, before there is a cursor: `end` takes only entries logged from then on, ' +
          '`beginning` everything the journal holds. Later starts resume from the cursor.',
      ),
    units: z
      .array(z.string().min(1))
      .default([])
      .describe('Only entries of these systemd units (`journalctl --unit`, each; any of them). Empty: all.'),
    identifiers: z
      .array(z.string().min(1))
      .default([])
      .describe(
        'Only entries with these SYSLOG_IDENTIFIERs (`journalctl --identifier`, each; any of them). Empty: all.',
      ),
    matches: z
      .array(z.string().regex(/^[A-Z0-9_]+=/, 'a match is FIELD=value'))
      .default([])
      .describe(
        'Raw journal matches (`_TRANSPORT=kernel`), as journalctl takes them: matches of one field are alternatives, ' +
          'matches of different fields must all hold. Units, identifiers and matches must all hold together.',
      ),
    directory: z
      .string()
      .optional()
      .describe('Read the journal files of this directory (`journalctl --directory`) instead of the system journal.'),
    namespace: z.string().optional().describe('Read this journal namespace (`journalctl --namespace`).'),
    fields: z
      .array(fieldName)
      .default([])
      .describe(
        'Journal fields carried with each record as RFC 5424 structured data, `[journal@32473 _SYSTEMD_UNIT="…"]`, ' +
          'so that they survive forwarding (`_SYSTEMD_UNIT`, `_UID`, `_BOOT_ID`, …).',
      ),
    max_message_size: size()
      .prefault('64KiB')
      .describe('A MESSAGE (or any field) longer than this is cut to it, and counted as truncated.'),
    facility: facilityName
      .default('user')
      .describe('Facility of entries without SYSLOG_FACILITY (the output of services, for one).'),
    severity: severityName.default('notice').describe('Severity of entries without PRIORITY.'),
    checkpoint_interval: duration()
      .prefault('1s')
      .describe('Most time between two writes of the cursor while entries flow.'),
    catch_up: z
      .enum(['files', 'journalctl'])
      .default('files')
      .describe(
        'How what the journal already holds is read (everything at a first start with `read_from: beginning`, and ' +
          'what was logged while sluice was stopped): `files` reads the journal files directly, several times ' +
          'faster than journalctl, up to what they hold at that moment, and then follows with journalctl; ' +
          '`journalctl` reads everything through journalctl. Files are read directly only without `units` and ' +
          '`namespace` (`identifiers` and `matches` select there as journalctl does); a compressed field (journald ' +
          'compresses fields over 512 bytes), or a file this reader does not know, hands over to journalctl from ' +
          'the last entry read.',
      ),
    journalctl: z
      .string()
      .default('journalctl')
      .describe('The journalctl program: a name looked up in PATH, or a path.'),
  })
  .describe(
    'Follows the systemd journal through `journalctl --follow --output=export`. Each entry becomes an RFC 5424 ' +
      'record: PRIORITY and SYSLOG_FACILITY the priority, `__REALTIME_TIMESTAMP` the time to the microsecond, ' +
      '`_HOSTNAME`, SYSLOG_IDENTIFIER (else `_COMM`), `_PID`, MESSAGE_ID the MSGID, and MESSAGE as it was logged ' +
      '(binary kept as bytes). The cursor of the last entry every queue has committed is kept under ' +
      '`state_dir/checkpoints/`; a restart resumes after it. journalctl exiting is logged and it is started again ' +
      'with backoff. Needs read access to the journal (the `systemd-journal` group).',
  );
