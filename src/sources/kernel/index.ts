import { readFileSync } from 'node:fs';
import { constants, type FileHandle, open } from 'node:fs/promises';
import type { z } from 'zod';
import { RateLimitedLog } from '../../log.js';
import { LogRecord, type RecordOrigin } from '../../record.js';
import type { SourceStats } from '../../stats.js';
import { OrderedCommits } from '../ordered-commits.js';
import { CheckpointFile } from '../checkpoint-file.js';
import type { Source, SourceContext } from '../types.js';
import type { kernelSourceSchema } from './config.js';
import { type KmsgRecord, kmsgToSyslog, parseKmsg } from './kmsg.js';

type Config = z.output<typeof kernelSourceSchema>;

/** `<state_dir>/checkpoints/<source>.kmsg.json`: the last committed record of a boot. */
interface KmsgCheckpoint {
  version: 1;
  boot_id: string;
  seq: number;
}

/** Records read before a batch is handed on. */
const BATCH = 512;

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
  } catch {
    return 'unknown';
  }
}

/** When the machine booted (ms since the epoch), from /proc/uptime. */
function bootTime(): number {
  try {
    return Date.now() - Number(readFileSync('/proc/uptime', 'utf8').split(' ')[0]) * 1000;
  } catch {
    return Date.now() - performance.now();
  }
}

/**
 * The kernel log, read from /dev/kmsg without blocking (a read returns one record, EAGAIN when
 * there is none, EPIPE when the kernel overwrote records not yet read). Sequence numbers tell what
 * was overwritten, and are the checkpoint and the records' stream positions.
 */
export class KernelSource implements Source {
  readonly name: string;
  readonly stats: SourceStats;
  private readonly quiet = new RateLimitedLog(10_000);
  private readonly checkpoint: CheckpointFile<KmsgCheckpoint>;
  private readonly origin: RecordOrigin;
  private readonly boot = bootId();
  /** The stream of this boot's records (sequence numbers start again at each boot). */
  private readonly stream: string;
  private readonly bootMs = bootTime();
  private readonly commits: OrderedCommits<number>;
  private handle: FileHandle | null = null;
  /** The last sequence number handed on (or skipped as already handed on): reading skips up to it. */
  private handed = -1;
  private saved = -1;
  private timer: NodeJS.Timeout | null = null;
  private checkpointTimer: NodeJS.Timeout | null = null;
  private reading: Promise<void> | null = null;
  private stopped = false;
  /** Reading waits for the queues (flow control) until this settles. */
  private waiting: Promise<unknown> | null = null;
  private reopen = false;

  constructor(
    private readonly config: Config,
    private readonly ctx: SourceContext,
  ) {
    this.name = ctx.name;
    this.stats = ctx.counters.of(ctx.name);
    this.stream = `kmsg|${ctx.hostname}|${this.boot}`;
    this.checkpoint = new CheckpointFile<KmsgCheckpoint>(ctx, 'kmsg', 'the kernel log checkpoint', this.quiet);
    this.origin = {
      source: ctx.name,
      from: ctx.hostname,
      hostname: ctx.hostname,
      format: 'syslog',
      lenient: false,
      counters: ctx.counters,
    };
    this.commits = new OrderedCommits<number>(-1, () => {
      // A queue could not write a batch: read again after the checkpoint (a new open starts at the oldest record).
      this.handed = this.commits.committed;
      this.reopen = true;
    });
  }

  describe(): string {
    return `kernel log ${this.config.device}`;
  }

  async start(): Promise<void> {
    const saved = this.loadCheckpoint();
    this.handle = await this.openDevice();
    if (saved !== null) {
      this.handed = this.commits.committed = this.saved = saved;
    } else if (this.config.read_from === 'end') {
      // Everything the kernel holds now is old: skipped, and the last of it is the checkpoint.
      const last = await this.skipAll();
      this.handed = this.commits.committed = last;
      await this.saveCheckpoint();
    }
    this.timer = setInterval(() => this.poll(), this.config.poll_interval);
    this.checkpointTimer = setInterval(() => void this.saveCheckpoint(), this.config.checkpoint_interval);
    this.poll();
  }

  /** Reads never block: an empty device answers EAGAIN, and the poll looks again. */
  private openDevice(): Promise<FileHandle> {
    return open(this.config.device, constants.O_RDONLY | constants.O_NONBLOCK);
  }

  private loadCheckpoint(): number | null {
    try {
      const c = this.checkpoint.read() as KmsgCheckpoint | null;
      if (c === null) return null;
      if (c.version !== 1 || typeof c.boot_id !== 'string' || !Number.isSafeInteger(c.seq))
        throw new Error('no boot id and sequence number');
      // Another boot: its sequence numbers start again, and every record of this boot is new.
      return c.boot_id === this.boot ? c.seq : null;
    } catch (err) {
      this.ctx.logger.error(
        { file: this.checkpoint.file, err: (err as Error).message },
        'kernel log checkpoint is damaged; reading every record the kernel holds',
      );
      return null;
    }
  }

  /** Reads to the end without handing anything on; the last sequence number seen. */
  private async skipAll(): Promise<number> {
    let last = -1;
    for (;;) {
      const text = await this.readSome();
      if (text === null) return last;
      for (const r of parseKmsg(text).records) last = r.seq;
    }
  }

  /** One read: a record (several, from a file), or null when there is nothing now. EPIPE is reported and skipped. */
  private async readSome(): Promise<string | null> {
    const handle = this.handle;
    if (!handle) return null;
    const buf = Buffer.allocUnsafe(16 * 1024);
    for (;;) {
      try {
        const { bytesRead } = await handle.read(buf, 0, buf.length, null);
        return bytesRead === 0 ? null : buf.toString('utf8', 0, bytesRead);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'EAGAIN') return null;
        // Records were overwritten before this read: the next read has the oldest one left. The
        // gap in sequence numbers is counted where the next record is handed on.
        if (code === 'EPIPE') continue;
        throw err;
      }
    }
  }

  private poll(): void {
    if (this.reading || this.stopped || this.waiting) return;
    this.reading = this.readLoop()
      .catch((err: Error) => {
        this.stats.connectionErrors++;
        this.quiet.log('read', (extra) =>
          this.ctx.logger.error(
            { device: this.config.device, err: err.message, ...extra },
            'reading the kernel log failed; will retry',
          ),
        );
      })
      .finally(() => {
        this.reading = null;
      });
  }

  private async readLoop(): Promise<void> {
    while (!this.stopped && !this.waiting) {
      if (this.reopen) {
        this.reopen = false;
        await this.handle?.close().catch(() => undefined);
        this.handle = await this.openDevice();
      }
      const batch: KmsgRecord[] = [];
      let more = true;
      while (batch.length < BATCH) {
        const text = await this.readSome();
        if (text === null) {
          more = false;
          break;
        }
        const { records, bad } = parseKmsg(text);
        this.stats.parseErrors += bad;
        for (const r of records) if (r.seq > this.handed) batch.push(r);
      }
      if (batch.length > 0) this.handOn(batch);
      if (!more) return;
    }
  }

  private handOn(batch: KmsgRecord[]): void {
    const now = Date.now();
    const records: LogRecord[] = [];
    let bytes = 0;
    for (const r of batch) {
      if (this.handed >= 0 && r.seq > this.handed + 1) {
        const lost = r.seq - this.handed - 1;
        this.ctx.counters.dropped(this.name, 'kernel_overwritten', lost);
        this.quiet.log('overwritten', (extra) =>
          this.ctx.logger.warn(
            { records_lost: lost, after_seq: this.handed, ...extra },
            'the kernel overwrote log records before they were read (its buffer is full): they are lost',
          ),
        );
      }
      const rec = new LogRecord(kmsgToSyslog(r, this.bootMs, this.ctx.hostname), now, this.origin);
      rec.setStream(this.stream, r.seq);
      records.push(rec);
      bytes += rec.raw.length;
      this.handed = r.seq;
    }
    this.stats.received += records.length;
    this.stats.receivedBytes += bytes;
    const d = this.ctx.router.dispatch(this.name, records, 'keep_waiting', this.commits.withdrawn);
    const settled = this.commits.add(this.handed, d?.committed);
    if (d?.accepted || this.commits.size > 16) {
      const wait = Promise.all([d?.accepted, this.commits.size > 16 ? settled : undefined]);
      this.waiting = wait;
      void wait.then(() => {
        this.waiting = null;
        this.poll();
      });
    }
  }

  private async saveCheckpoint(): Promise<void> {
    const seq = this.commits.committed;
    if (seq < 0 || seq === this.saved) return;
    if (await this.checkpoint.write({ version: 1, boot_id: this.boot, seq })) this.saved = seq;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.checkpointTimer) clearInterval(this.checkpointTimer);
    await this.reading;
    await this.commits.drain(5000);
    await this.handle?.close().catch(() => undefined);
    this.handle = null;
    await this.saveCheckpoint();
  }
}
