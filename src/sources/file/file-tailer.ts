import { open, stat, type FileHandle } from 'node:fs/promises';
import { crc32 } from 'node:zlib';
import { SyslogFrameDecoder } from '../../framing/syslog-frame-decoder.js';
import { LogRecord, type RecordOrigin } from '../../record.js';
import type { Dispatch } from '../../pipeline/router.js';
import { FileCheckpointStore, type FileCheckpoint } from './checkpoint-store.js';

export const FINGERPRINT_BYTES = 256;
/** Reads whose lines may wait for their fsync at once, per file, before reading pauses. */
const MAX_UNCOMMITTED_READS = 16;
const READ_SIZE = 256 * 1024;

export interface FileIdentity {
  dev: string;
  ino: string;
}

interface PendingCommit {
  offset: number;
  state: 'pending' | 'ok' | 'failed';
  done: Promise<void>;
}

/** The key of a file's identity: the one its checkpoint is stored under. */
export function identityKey(id: FileIdentity): string {
  return FileCheckpointStore.key(id.dev, id.ino);
}

export async function statIdentity(file: string): Promise<(FileIdentity & { size: number }) | null> {
  try {
    const s = await stat(file, { bigint: true });
    if (!s.isFile()) return null;
    return { dev: String(s.dev), ino: String(s.ino), size: Number(s.size) };
  } catch {
    return null;
  }
}

/** crc32 of the first bytes: with device and inode, it tells a reused inode from the file we knew. */
export async function fingerprintOf(
  handle: FileHandle,
  length = FINGERPRINT_BYTES,
): Promise<{ crc: string; bytes: number }> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await handle.read(buf, 0, length, 0);
  return { crc: crc32(buf.subarray(0, bytesRead)).toString(16), bytes: bytesRead };
}

export interface TailerOptions {
  maxLineLength: number;
  flushTimeout: number;
  /** Hands a batch of lines on (see Router.dispatch); `withdrawn` aborts when they will be read again. */
  deliver: (records: LogRecord[], withdrawn: AbortSignal) => Dispatch | undefined;
  onTruncated: (file: string, from: number) => void;
}

/**
 * Follows one file, known by device and inode, through renames. Reads from an open descriptor so a
 * rotated file can be finished after its name points elsewhere. `committed` only moves past lines
 * that `deliver` has confirmed.
 */
export class FileTailer {
  /** Bytes read from the file so far. */
  private readOffset: number;
  /** Offset just past the last line that every queue accepted: what the checkpoint records. */
  committed: number;
  fingerprint = { crc: '', bytes: 0 };
  /** Birth time (ms) of the file; 0 where the filesystem keeps none. */
  birth = 0;
  /** The path no longer names this file (renamed or deleted): finish it, then close. */
  rotated = false;
  /** When the file last grew, or when it was last read to its end after rotation. */
  lastActivity = Date.now();
  private readonly decoder: SyslogFrameDecoder;
  private reading: Promise<void> | null = null;
  private again = false;
  private partialSince = 0;
  private closed = false;
  private truncatedSeen = 0;
  private commits: PendingCommit[] = [];
  /**
   * Bumped whenever reading starts again at another offset (a failed commit, a truncation): a read
   * or a hand-over under way across that await belongs to the old position and is discarded.
   */
  private generation = 0;
  /** Aborted when reading starts again before lines already handed on: takes back those not yet queued. */
  private handedOn = new AbortController();

  private constructor(
    public path: string,
    readonly id: FileIdentity,
    private readonly handle: FileHandle,
    offset: number,
    private readonly origin: RecordOrigin,
    private readonly options: TailerOptions,
  ) {
    this.readOffset = offset;
    this.committed = offset;
    this.decoder = new SyslogFrameDecoder({
      maxMessageSize: options.maxLineLength,
      oversize: 'truncate',
      framing: 'lf',
    });
    this.decoder.seek(offset);
  }

  /**
   * The identity of this file's lines as a stream (see LogRecord.stream): the host, device and
   * inode, birth time, and a checksum of the first line, so a truncated or replaced file is a new
   * stream. A line read twice (after a crash) keeps its (stream, offset).
   */
  private streamId: string | null = null;

  private async stream(): Promise<string> {
    if (this.streamId) return this.streamId;
    const head = Buffer.alloc(FINGERPRINT_BYTES);
    const { bytesRead } = await this.handle.read(head, 0, FINGERPRINT_BYTES, 0);
    const nl = head.subarray(0, bytesRead).indexOf(0x0a);
    const first = head.subarray(0, nl >= 0 ? nl : bytesRead);
    const st = await this.handle.stat();
    const file = `${this.id.dev}:${this.id.ino}|${Math.floor(st.birthtimeMs)}|${crc32(first).toString(16)}`;
    this.streamId = `file|${this.origin.hostname ?? ''}|${file}`;
    return this.streamId;
  }

  static async open(
    file: string,
    id: FileIdentity,
    start: 'beginning' | 'end' | FileCheckpoint | null,
    origin: RecordOrigin,
    options: TailerOptions,
    /** Open only if `start` (a checkpoint) still fits this file: else it is some other file, left alone. */
    onlyToResume = false,
  ): Promise<FileTailer | null> {
    let handle: FileHandle;
    try {
      handle = await open(file, 'r');
    } catch {
      return null;
    }
    const s = await handle.stat({ bigint: true });
    // The name may have moved on between stat and open.
    if (String(s.dev) !== id.dev || String(s.ino) !== id.ino) {
      await handle.close();
      return null;
    }
    const size = Number(s.size);
    const birth = Number(s.birthtimeMs);
    const fp = await fingerprintOf(handle);
    let offset = 0;
    let resumes = false;
    let sameFile = false;
    if (start === 'end') offset = size;
    else if (start !== null && start !== 'beginning') {
      // Resume only where the first bytes are still the ones we saw: else the inode was reused.
      const now = await fingerprintOf(handle, start.fingerprint_bytes);
      resumes = now.crc === start.fingerprint && now.bytes === start.fingerprint_bytes && size >= start.offset;
      if (resumes) offset = start.offset;
      // Other first bytes but the same birth: the file was cut (copytruncate) and written again, not
      // replaced by another one on a reused inode. Read from its start, as a truncation seen live.
      sameFile = birth > 0 && start.birth === birth;
    }
    if (onlyToResume && !resumes && !sameFile) {
      await handle.close();
      return null;
    }
    const t = new FileTailer(file, id, handle, offset, origin, options);
    t.fingerprint = fp;
    t.birth = birth;
    return t;
  }

  get pendingRead(): boolean {
    return this.reading !== null;
  }

  /** Reads whatever is new; calls made while a read runs are folded into one more pass. */
  read(): Promise<void> {
    if (this.closed) return Promise.resolve();
    if (this.reading) {
      this.again = true;
      return this.reading;
    }
    this.reading = this.readLoop().finally(() => {
      this.reading = null;
    });
    return this.reading;
  }

  private async readLoop(): Promise<void> {
    do {
      this.again = false;
      for (;;) {
        if (this.closed) return;
        // Before every chunk, not once a pass: a read that waited on a full queue may come back to
        // a file that was cut (copytruncate) and has grown past this offset again meanwhile.
        await this.checkTruncation();
        const generation = this.generation;
        const at = this.readOffset;
        // Size the buffer to what is there: queued lines keep their read buffer alive.
        const want = Math.min(READ_SIZE, (await this.handle.stat()).size - at);
        if (generation !== this.generation) continue;
        if (want <= 0) break;
        const buf = Buffer.allocUnsafe(want);
        const { bytesRead } = await this.handle.read(buf, 0, want, at);
        // Rewound while reading (a commit failed): these bytes are read again from the new offset.
        if (generation !== this.generation) continue;
        if (bytesRead === 0) break;
        this.readOffset = at + bytesRead;
        this.lastActivity = Date.now();
        const frames: Buffer[] = [];
        const positions: number[] = [];
        this.decoder.push(buf.subarray(0, bytesRead), frames, positions);
        await this.emit(frames, positions);
        if (this.fingerprint.bytes < FINGERPRINT_BYTES) this.fingerprint = await fingerprintOf(this.handle);
      }
      await this.flushStalePartial();
    } while (this.again && !this.closed);
  }

  private async emit(frames: Buffer[], positions: number[]): Promise<void> {
    const generation = this.generation;
    const endOffset = this.readOffset - this.decoder.pendingBytes;
    if (this.decoder.pendingBytes === 0) this.partialSince = 0;
    else if (this.partialSince === 0) this.partialSince = Date.now();
    if (this.decoder.truncated !== this.truncatedSeen) {
      this.origin.counters.of(this.origin.source).truncated += this.decoder.truncated - this.truncatedSeen;
      this.truncatedSeen = this.decoder.truncated;
    }
    let committed: Promise<void> | undefined;
    if (frames.length > 0) {
      try {
        const now = Date.now();
        const stream = await this.stream();
        const records = frames.map((f, i) => {
          const r = new LogRecord(f, now, this.origin);
          r.stream = stream;
          r.streamPos = positions[i]!;
          return r;
        });
        const d = this.options.deliver(records, this.handedOn.signal);
        if (d?.accepted) await d.accepted; // flow control: no more reading until the queues took these
        committed = d?.committed;
      } catch (err) {
        // These lines were read but not handed on: the next read must start before them, not after
        // (the read offset is already past them, and a later commit would move the checkpoint over them).
        if (generation === this.generation) this.rereadFrom(this.committed);
        throw err;
      }
    }
    // Reading was rewound meanwhile (an earlier batch's commit failed): these lines are read and
    // sent again; their commit must not move the checkpoint past the earlier lines not yet resent.
    if (generation !== this.generation) return;
    // The checkpoint moves past these lines once they are durable; later reads need not wait for it.
    const entry: PendingCommit = {
      offset: endOffset,
      state: committed ? 'pending' : 'ok',
      done: committed ?? Promise.resolve(),
    };
    this.commits.push(entry);
    if (committed) {
      committed.then(
        () => {
          entry.state = 'ok';
          this.settleCommits();
        },
        () => {
          entry.state = 'failed';
          this.settleCommits();
        },
      );
    } else {
      this.settleCommits();
    }
    if (this.commits.length > MAX_UNCOMMITTED_READS) await this.commits[0]!.done.catch(() => undefined);
  }

  /** Advances `committed` over the leading run of settled commits, in order. */
  private settleCommits(): void {
    while (this.commits.length > 0 && this.commits[0]!.state !== 'pending') {
      const c = this.commits.shift()!;
      if (c.state === 'failed') {
        // A queue could not write these lines: never move past them; read them again.
        this.rereadFrom(this.committed);
        return;
      }
      this.committed = c.offset;
    }
  }

  /** A last line without its newline is sent once it has waited `flushTimeout`. */
  private async flushStalePartial(): Promise<void> {
    if (this.partialSince === 0 || Date.now() - this.partialSince < this.options.flushTimeout) return;
    const frames: Buffer[] = [];
    const positions: number[] = [];
    this.decoder.end(frames, positions);
    this.partialSince = 0;
    await this.emit(frames, positions);
  }

  private rereadFrom(offset: number): void {
    this.generation++;
    // Every line from `offset` on is read and sent again: batches of them still waiting to be
    // queued must not be, or they would reach the receiver ahead of the earlier lines sent again.
    this.handedOn.abort();
    this.handedOn = new AbortController();
    this.commits = [];
    this.readOffset = offset;
    this.partialSince = 0;
    const discard: Buffer[] = [];
    this.decoder.end(discard);
    this.decoder.seek(offset);
  }

  /** copytruncate: the file shrank below what we read, or its first bytes changed. Start again at 0. */
  private async checkTruncation(): Promise<void> {
    const s = await this.handle.stat();
    let truncated = s.size < this.readOffset;
    if (!truncated && this.fingerprint.bytes > 0) {
      const now = await fingerprintOf(this.handle, this.fingerprint.bytes);
      truncated = now.crc !== this.fingerprint.crc || now.bytes !== this.fingerprint.bytes;
    }
    if (!truncated) return;
    this.options.onTruncated(this.path, this.readOffset);
    this.generation++;
    this.readOffset = 0;
    this.committed = 0;
    // Commits still in flight are for offsets in the old content: when they settle they must not
    // move the checkpoint of the new content past lines not yet read.
    this.commits = [];
    this.partialSince = 0;
    const discard: Buffer[] = [];
    this.decoder.end(discard);
    this.decoder.seek(0);
    this.streamId = null; // a new stream
    this.fingerprint = await fingerprintOf(this.handle);
  }

  /**
   * True once everything in the file has been read and committed: a rotated file let go before its
   * last lines are committed would take its checkpoint with it, and a stop or a failed write then
   * loses those lines.
   */
  async atEnd(): Promise<boolean> {
    if (this.closed) return true;
    const s = await this.handle.stat();
    return s.size <= this.readOffset && this.reading === null && this.commits.length === 0;
  }

  checkpoint(): FileCheckpoint {
    return {
      path: this.path,
      dev: this.id.dev,
      ino: this.id.ino,
      fingerprint: this.fingerprint.crc,
      fingerprint_bytes: this.fingerprint.bytes,
      offset: this.committed,
      ...(this.birth > 0 ? { birth: this.birth } : {}),
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    // A read blocked on a full queue is not waited for long: its lines are not committed and are read again next start.
    if (this.reading)
      await Promise.race([this.reading.catch(() => undefined), new Promise((r) => setTimeout(r, 2000).unref())]);
    await this.handle.close().catch(() => undefined);
  }
}
