import type { LogRecord } from '../record.js';

/**
 * File-system codes that one record's path earns every time, whatever the state of the disk: the
 * name is too long, a component is a file, the name is a directory, the bytes are not a valid name.
 */
export const PER_RECORD_FS = new Set(['ENAMETOOLONG', 'ENOTDIR', 'EISDIR', 'EILSEQ', 'EINVAL', 'ELOOP', 'EFBIG']);

/** Thrown by a destination that knows the record it was sending caused the failure. */
export class RecordError extends Error {
  override readonly name = 'RecordError';
  constructor(
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/**
 * A failure that may be the record's doing: a per-record file-system code, an encoding error (a
 * RangeError or TypeError out of formatting code), or a RecordError. The drainer then sends alone
 * the records of the batch that failed, and sets one aside once it has failed so
 * `max_record_attempts` times in a row. Anything else (network, disk full, permissions, errors it
 * cannot place) is retried for as long as it takes.
 */
export function isRecordShaped(err: unknown): boolean {
  if (err instanceof RecordError || err instanceof RangeError || err instanceof TypeError) return true;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && PER_RECORD_FS.has(code);
}

/** The short reason a record-shaped failure is filed under. */
export function reasonOf(err: unknown): string {
  if (err instanceof RecordError) return err.reason;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string') return code;
  return 'encoding';
}

/** The same queued record, whether handed out again as the same object (memory) or read again (disk). */
export function sameRecord(a: LogRecord, b: LogRecord): boolean {
  return a === b || (a.queueSeq >= 0 && a.queueSeq === b.queueSeq);
}

/** A record a destination can never deliver, with why: set aside, the rest of its batch goes on. */
export interface Rejected {
  record: LogRecord;
  reason: string;
  error: string;
}
