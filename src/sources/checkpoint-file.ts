import { mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { RateLimitedLog } from '../log.js';
import { writeFileAtomic } from '../util/fs.js';
import type { SourceContext } from './types.js';

/**
 * A source's checkpoint in one small JSON file under `state_dir/checkpoints/`, replaced atomically.
 * A write that fails is logged (rate-limited), told to the load-shedding gate, and tried again by the
 * next write.
 */
export class CheckpointFile<T> {
  readonly file: string;

  constructor(
    private readonly ctx: SourceContext,
    /** `<source>.<suffix>.json` */
    suffix: string,
    /** What it holds, for the log: `the journal cursor`. */
    private readonly what: string,
    private readonly quiet: RateLimitedLog,
  ) {
    this.file = path.join(ctx.stateDir, 'checkpoints', `${ctx.name}.${suffix}.json`);
    mkdirSync(path.dirname(this.file), { recursive: true });
  }

  /** The parsed file; null when there is none. Throws on a file that is not JSON (the caller says what it does then). */
  read(): unknown {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw err;
    }
    return JSON.parse(text) as unknown;
  }

  /** True once written. */
  async write(value: T): Promise<boolean> {
    try {
      await writeFileAtomic(this.file, `${JSON.stringify(value)}\n`);
      return true;
    } catch (err) {
      const ctx = this.ctx;
      ctx.diskHealth?.failed(err as Error, `${this.what} of ${ctx.name}`);
      this.quiet.log('checkpoint', (extra) =>
        ctx.logger.error(
          { file: this.file, err: (err as Error).message, ...extra },
          `cannot write ${this.what}; will retry`,
        ),
      );
      return false;
    }
  }
}
