/**
 * The checkpoint of a source that can read again (a journal cursor, a kernel sequence number):
 * batches are handed on in order, each with its position and its commit; the checkpoint moves over
 * the leading run of committed batches, never past one not yet committed. A failed commit withdraws
 * the batches still waiting to be queued, forgets the rest, and calls `failed` (the source reads
 * again from `committed`).
 */
export class OrderedCommits<P> {
  private pending: { pos: P; state: 'pending' | 'ok' | 'failed'; done: Promise<void> }[] = [];
  /** Bumped by `clear`: commits of batches handed on before it settle into nothing. */
  private epoch = 0;
  private withdrawal = new AbortController();

  constructor(
    /** Where every batch so far is committed: the checkpoint. */
    public committed: P,
    private readonly failed: () => void,
  ) {}

  /**
   * For each batch handed on (Router.dispatch's `withdrawn`): aborted when a commit fails, so that
   * batches still waiting to be queued (a latched gate, a full queue) are taken back. Queued after
   * the failure, they would reach the receiver ahead of the batch read again, and an exactly-once
   * receiver would drop that one as already written.
   */
  get withdrawn(): AbortSignal {
    return this.withdrawal.signal;
  }

  /** Batches handed on and not yet settled. */
  get size(): number {
    return this.pending.length;
  }

  /** A batch ending at `pos`, durable once `commit` resolves (at once without one). Returns when it settles (never rejects). */
  add(pos: P, commit: Promise<void> | undefined): Promise<void> {
    const entry = { pos, state: commit ? ('pending' as const) : ('ok' as const), done: Promise.resolve() } as {
      pos: P;
      state: 'pending' | 'ok' | 'failed';
      done: Promise<void>;
    };
    this.pending.push(entry);
    if (!commit) {
      this.settle();
      return entry.done;
    }
    const epoch = this.epoch;
    entry.done = commit.then(
      () => {
        entry.state = 'ok';
        if (epoch === this.epoch) this.settle();
      },
      () => {
        entry.state = 'failed';
        if (epoch === this.epoch) this.settle();
      },
    );
    return entry.done;
  }

  /** Forgets every batch not settled (the source reads again from `committed`). */
  clear(): void {
    this.epoch++;
    this.pending = [];
  }

  /** Waits up to `ms` for what is pending, then moves the checkpoint over what committed (at a stop). */
  async drain(ms: number): Promise<void> {
    const all = Promise.all(this.pending.map((p) => p.done));
    await Promise.race([all, new Promise((r) => setTimeout(r, ms).unref())]);
    this.settle();
  }

  private settle(): void {
    while (this.pending.length > 0 && this.pending[0]!.state !== 'pending') {
      const c = this.pending.shift()!;
      if (c.state === 'failed') {
        this.clear();
        this.withdrawal.abort();
        this.withdrawal = new AbortController();
        this.failed();
        return;
      }
      this.committed = c.pos;
    }
  }
}
