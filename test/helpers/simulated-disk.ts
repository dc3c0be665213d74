import { openFsQueueFile, type QueueFile } from '../../src/queue/disk/queue-file.js';

/**
 * A disk for crash tests: reads see every write (like the page cache), `sync` makes them durable,
 * and `crash` forgets unsynced writes except for a torn prefix of the last one.
 */
export class SimulatedDisk {
  private durable: Buffer = Buffer.alloc(0);
  private current: Buffer = Buffer.alloc(0);
  private pending: { pos: number; data: Buffer }[] = [];

  /** `slowWrites`: a write lands a macrotask later, as a real one does, so other work can interleave. */
  constructor(private readonly options: { slowWrites?: boolean } = {}) {}

  private static apply(target: Buffer, pos: number, data: Buffer): Buffer {
    let t = target;
    if (pos + data.length > t.length) {
      const grown = Buffer.alloc(pos + data.length);
      t.copy(grown);
      t = grown;
    }
    data.copy(t, pos);
    return t;
  }

  /**
   * Power loss. Each unsynced write before the last survives only if `keepEarlier(i)` says so (a
   * disk may persist them in any order); the last one is torn after `tornBytes(len)` bytes.
   */
  crash(tornBytes: (length: number) => number, keepEarlier: (index: number) => boolean = () => false): void {
    const last = this.pending.at(-1);
    this.current = Buffer.from(this.durable);
    this.pending.slice(0, -1).forEach((w, i) => {
      if (keepEarlier(i)) this.current = SimulatedDisk.apply(this.current, w.pos, w.data);
    });
    if (last) {
      const keep = Math.min(last.data.length, Math.max(0, tornBytes(last.data.length)));
      if (keep > 0) this.current = SimulatedDisk.apply(this.current, last.pos, last.data.subarray(0, keep));
    }
    this.durable = Buffer.from(this.current);
    this.pending = [];
  }

  bytes(): Buffer {
    return this.current;
  }

  /** Replaces the content (for corruption tests), durably. */
  setBytes(b: Buffer): void {
    this.current = Buffer.from(b);
    this.durable = Buffer.from(b);
    this.pending = [];
  }

  file(): QueueFile {
    return {
      read: async (buf, offset, length, position) => {
        const n = Math.max(0, Math.min(length, this.current.length - position));
        this.current.copy(buf, offset, position, position + n);
        return n;
      },
      write: async (buf, offset, length, position) => {
        if (this.options.slowWrites) await new Promise((r) => setImmediate(r));
        const data = Buffer.from(buf.subarray(offset, offset + length));
        this.pending.push({ pos: position, data });
        this.current = SimulatedDisk.apply(this.current, position, data);
      },
      sync: async () => {
        this.durable = Buffer.from(this.current);
        this.pending = [];
      },
      size: async () => this.current.length,
      truncate: async (length) => {
        const b = Buffer.alloc(length);
        this.current.copy(b, 0, 0, Math.min(length, this.current.length));
        this.current = b;
        // Size changes are metadata: treat them as durable at once (the ring syncs after creating).
        this.durable = Buffer.from(b);
        this.pending = [];
      },
      close: async () => undefined,
    };
  }
}

/**
 * A real file system under a reliable queue (pass `open` as its `openFile`) with faults on demand:
 * writes held as on a stalled disk, writes failing as on a full one, fsyncs failing as on a broken
 * one, and a kill: from then on nothing the old queue does reaches the files (the writes already
 * issued do, as they reach the page cache when a process dies).
 */
export class FaultyDisk {
  /** An error code for every write while set (ENOSPC: a full disk). */
  failWrites: string | null = null;
  /** An error code for every fsync while set (EIO: a disk that lost data). */
  failSyncs: string | null = null;
  /** Called as each file is opened, before the queue gets it (a test acts at a moment the queue chooses). */
  onOpen: ((file: string, create: boolean) => void) | null = null;
  private held: Promise<void> | null = null;
  private release: (() => void) | null = null;
  private files: { file: QueueFile; dead: boolean }[] = [];

  private killed = false;

  readonly open = async (file: string, create: boolean): Promise<QueueFile> => {
    // A dead process opens nothing (a rotation under way when it died must not leave a file open).
    if (this.killed) throw Object.assign(new Error('the process was killed'), { code: 'EKILLED' });
    this.onOpen?.(file, create);
    const real = await openFsQueueFile(file, create);
    const entry = { file: real, dead: false };
    this.files.push(entry);
    const alive = () => {
      if (entry.dead) throw Object.assign(new Error('the process was killed'), { code: 'EKILLED' });
    };
    const fault = (code: string, op: string) => Object.assign(new Error(`${code}: injected fault, ${op}`), { code });
    return {
      read: async (...a) => {
        alive();
        return real.read(...a);
      },
      write: async (...a) => {
        alive();
        if (this.held) await this.held;
        alive();
        if (this.failWrites) throw fault(this.failWrites, 'write');
        return real.write(...a);
      },
      sync: async () => {
        alive();
        if (this.failSyncs) throw fault(this.failSyncs, 'fsync');
        return real.sync();
      },
      size: async () => {
        alive();
        return real.size();
      },
      truncate: async (n) => {
        alive();
        return real.truncate(n);
      },
      close: async () => {
        if (entry.dead) return;
        entry.dead = true;
        await real.close();
      },
    };
  };

  /** The files opened and not closed yet (a queue that let go of everything has none). */
  openFiles(): number {
    return this.files.filter((f) => !f.dead).length;
  }

  /** Holds every write until `releaseWrites()`, as a disk far slower than the sender would. */
  holdWrites(): void {
    this.held ??= new Promise<void>((r) => (this.release = r));
  }

  releaseWrites(): void {
    this.release?.();
    this.held = null;
    this.release = null;
  }

  /** The process dies: every file is closed under the queue, and nothing it does later reaches them. */
  async kill(): Promise<void> {
    this.killed = true;
    this.releaseWrites();
    await new Promise((r) => setTimeout(r, 20)); // writes and a sync under way finish, as they would in the kernel
    for (const f of this.files.splice(0)) {
      if (f.dead) continue;
      f.dead = true;
      await f.file.close();
    }
  }
}
