import type { LogRecord } from '../record.js';

/**
 * Error codes that say the destination as a whole cannot take anything right now (its network, its
 * peer, its disk): the batch is retried after a backoff, for as long as it takes, and no record is
 * ever blamed for them. Any other failure may be the record's: see QueueDrainer.
 */
const DESTINATION_WIDE = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'ECONNABORTED', 'EPIPE', 'ETIMEDOUT', 'EHOSTUNREACH', 'EHOSTDOWN', 'ENETUNREACH', 'ENETDOWN',
  'EAI_AGAIN', 'ENOTFOUND', 'EADDRNOTAVAIL', 'ENOSPC', 'EDQUOT', 'EIO', 'EROFS', 'EACCES', 'EPERM', 'EMFILE', 'ENFILE',
  'EBUSY', 'EAGAIN', 'ENOMEM', 'ESTALE', 'ERR_TLS_CERT_ALTNAME_INVALID', 'ERR_SSL_WRONG_VERSION_NUMBER',
  'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'CERT_HAS_EXPIRED',
]);

/**
 * File-system codes that one record's path earns every time, whatever the state of the disk: the
 * name is too long, a component is a file, the name is a directory, the bytes are not a valid name.
 */
export const PER_RECORD_FS = new Set(['ENAMETOOLONG', 'ENOTDIR', 'EISDIR', 'EILSEQ', 'EINVAL', 'ELOOP', 'EFBIG']);

export function isDestinationWide(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | null)?.code;
  return typeof code === 'string' && DESTINATION_WIDE.has(code);
}

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

/** A record a destination can never deliver, with why: set aside, the rest of its batch goes on. */
export interface Rejected {
  record: LogRecord;
  reason: string;
  error: string;
}
