import type { QueueFile } from '../../src/queue/disk/queue-file.js';

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
 * Holds every write of a reliable queue's file until the returned function is called, as a disk
 * far slower than the sender would. Reaches into the queue's ring: tests only.
 */
export function holdQueueWrites(queue: object): () => void {
  const file = (queue as { ring: { file: QueueFile } }).ring.file;
  const write = file.write.bind(file);
  let release!: () => void;
  const held = new Promise<void>((r) => (release = r));
  file.write = async (...args) => {
    await held;
    return write(...args);
  };
  return release;
}

/**
 * Makes the writes of a reliable queue's file fail with ENOSPC while `failing` is set, as a full
 * disk would. Reaches into the queue's ring: tests only.
 */
export function failQueueWrites(queue: object): { failing: boolean } {
  const file = (queue as { ring: { file: QueueFile } }).ring.file;
  const write = file.write.bind(file);
  const control = { failing: false };
  file.write = async (...args) => {
    if (control.failing) throw Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC' });
    return write(...args);
  };
  return control;
}
