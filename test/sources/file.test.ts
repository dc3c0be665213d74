import {
  appendFileSync,
  copyFileSync,
  readFileSync,
  renameSync,
  statSync,
  truncateSync,
  writeFileSync,
  mkdirSync,
  unlinkSync,
} from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Agent } from '../../src/agent.js';
import type { FileSource } from '../../src/sources/file/index.js';
import { readLines, scratchDir, sleep, testAgent, waitFor } from '../helpers/agent.js';

interface Checkpoints {
  files: { path: string; dev: string; ino: string; fingerprint: string; fingerprint_bytes: number; offset: number }[];
}

describe('file source', () => {
  let dir: string;
  let agent: Agent | undefined;

  const yaml = (extra = '', paths = `["${'${DIR}'}/logs/*.log"]`) => `
state_dir: \${DIR}/state
sources:
  app:
    type: file
    paths: ${paths}
    poll_interval: 50ms
    checkpoint_interval: 50ms
    flush_timeout: 300ms
${extra}
destinations:
  f: { type: file, path: "\${DIR}/out.log" }
pipelines:
  p: { from: [app], to: [f] }
`;

  async function start(extra = '', paths?: string): Promise<Agent> {
    process.env.DIR = dir;
    agent = await testAgent(yaml(extra, paths));
    return agent;
  }

  function setup(): { logs: string; out: string } {
    dir = scratchDir();
    const logs = path.join(dir, 'logs');
    mkdirSync(logs);
    return { logs, out: path.join(dir, 'out.log') };
  }

  function followed(): ReturnType<FileSource['followed']> {
    return (agent!.sources.get('app') as FileSource).followed();
  }

  /** A run that reads logs/app.log (`a1`, `a2`) and stops. */
  async function readTwoLinesAndStop(): Promise<{ logs: string; out: string; app: string }> {
    const { logs, out } = setup();
    const app = path.join(logs, 'app.log');
    writeFileSync(app, 'a1\na2\n');
    await start();
    await waitFor('first lines', () => readLines(out).length === 2);
    await agent!.stop();
    agent = undefined;
    return { logs, out, app };
  }

  function checkpointsHave(ino: string): boolean {
    try {
      return checkpoints().files.some((f) => f.ino === ino);
    } catch {
      return false;
    }
  }

  function checkpoints(): Checkpoints {
    return JSON.parse(readFileSync(path.join(dir, 'state/checkpoints/app.json'), 'utf8')) as Checkpoints;
  }

  it(
    'reads existing lines from the beginning, then follows appends, holding a partial line until its ' + 'newline',
    async () => {
      const { logs, out } = setup();
      const app = path.join(logs, 'app.log');
      writeFileSync(app, 'one\ntwo\r\n\nthree\n');
      await start();
      await waitFor('existing lines', () => readLines(out).length === 3);
      appendFileSync(app, 'four\nfiv');
      await waitFor('appended line', () => readLines(out).length === 4);
      appendFileSync(app, 'e\n');
      await waitFor('completed line', () => readLines(out).length === 5);
      expect(readLines(out)).toEqual(['one', 'two', 'three', 'four', 'five']);
    },
  );

  it('sends a last line without newline after flush_timeout', async () => {
    const { logs, out } = setup();
    writeFileSync(path.join(logs, 'a.log'), 'complete\nunterminated');
    await start();
    await waitFor('complete line', () => readLines(out).length >= 1);
    await waitFor('unterminated line after the flush timeout', () => readLines(out).length === 2, 5000);
    expect(readLines(out)).toEqual(['complete', 'unterminated']);
  });

  it(
    'with read_from: end skips what existed at start but reads files that appear later from their ' + 'beginning',
    async () => {
      const { logs, out } = setup();
      writeFileSync(path.join(logs, 'old.log'), 'old line\n');
      await start('    read_from: end');
      appendFileSync(path.join(logs, 'old.log'), 'new line\n');
      writeFileSync(path.join(logs, 'fresh.log'), 'fresh 1\nfresh 2\n');
      await waitFor('three lines', () => readLines(out).length === 3);
      expect(readLines(out).sort()).toEqual(['fresh 1', 'fresh 2', 'new line']);
    },
  );

  it('resumes from its checkpoint after a restart: no line lost, none repeated', async () => {
    const { out, app } = await readTwoLinesAndStop();
    expect(checkpoints().files).toEqual([expect.objectContaining({ path: app, offset: 6 })]);
    appendFileSync(app, 'b1\nb2\n');
    await start();
    await waitFor('lines written while stopped', () => readLines(out).length === 4);
    await sleep(200);
    expect(readLines(out)).toEqual(['a1', 'a2', 'b1', 'b2']);
  });

  it('follows rotation by rename: finishes the old file, then reads the new one', async () => {
    const { logs, out } = setup();
    const app = path.join(logs, 'app.log');
    writeFileSync(app, 'before 1\nbefore 2\n');
    await start();
    await waitFor('first lines', () => readLines(out).length === 2);
    appendFileSync(app, 'late in old file\n');
    renameSync(app, path.join(logs, 'app.log.1')); // not matched by *.log
    writeFileSync(app, 'after 1\n');
    appendFileSync(path.join(logs, 'app.log.1'), 'written after the rename\n');
    appendFileSync(app, 'after 2\n');
    await waitFor('all lines', () => readLines(out).length === 6);
    await sleep(300);
    const lines = readLines(out);
    expect(lines.sort()).toEqual(
      ['after 1', 'after 2', 'before 1', 'before 2', 'late in old file', 'written after the rename'].sort(),
    );
  });

  it('finishes a file rotated while it was stopped, to a name the globs do not match', async () => {
    const { logs, out, app } = await readTwoLinesAndStop();
    // While stopped: the writer goes on, then logrotate renames the file and a new one is created.
    appendFileSync(app, 'a3 written after the stop\n');
    renameSync(app, path.join(logs, 'app.log.1'));
    writeFileSync(app, 'b1\n');
    await start();
    await waitFor('the rest of the rotated file and the new file', () => readLines(out).length >= 4);
    await sleep(300);
    expect(readLines(out).sort()).toEqual(['a1', 'a2', 'a3 written after the stop', 'b1']);
    expect(followed()).toContainEqual(expect.objectContaining({ path: path.join(logs, 'app.log.1'), rotated: true }));
  });

  it('loses nothing when the file is renamed at any moment while sluice starts, with thousands of old files beside ' +
    'it', async () => {
    const { logs, out } = setup();
    // Old rotated files make the start's directory scan take a while: the rename lands inside it.
    for (let i = 0; i < 3000; i++) writeFileSync(path.join(logs, `app.log.old${i}`), 'x\n');
    const app = path.join(logs, 'app.log');
    let written = 0;
    const write = (n: number) => {
      let text = '';
      for (let k = 0; k < n; k++) text += `line ${written++}\n`;
      appendFileSync(app, text);
    };
    write(100);
    await start();
    await waitFor('the first lines', () => readLines(out).length === 100);
    // One rename per round, at a seeded moment within the time a start takes (measured by the last one).
    let startMs = 400;
    let seed = 15;
    const rand = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let round = 0; round < 6; round++) {
      await agent!.stop();
      agent = undefined;
      write(1500); // written while sluice is stopped: its checkpoint is behind these
      const t0 = Date.now();
      const starting = start().then(() => (startMs = Date.now() - t0));
      await sleep(Math.floor(rand() * startMs));
      renameSync(app, path.join(logs, `app.log.${round}`)); // a name the globs do not match
      write(10); // the new file
      await starting;
      await waitFor(`all ${written} lines after round ${round}`, () => readLines(out).length >= written, 20_000);
    }
    await sleep(300);
    const lines = readLines(out);
    expect(lines.length).toBe(written);
    expect(new Set(lines).size).toBe(written);
  }, 120_000);

  it('finishes, at the next start, a rotated file that the last run was still finishing when it stopped', async () => {
    const { logs, out } = setup();
    const app = path.join(logs, 'app.log');
    let text = '';
    for (let i = 0; i < 20_000; i++) text += `line ${i} ${'p'.repeat(150)}\n`;
    writeFileSync(app, text);
    // A destination that cannot be reached and a small queue: the file cannot be read to its end.
    const blocked = `
destinations:
  f: { type: sluice, urls: ["ws://127.0.0.1:1"], token: "t", queue: { mode: reliable, max_size: 69632 } }
`;
    const draining = `
destinations:
  f: { type: file, path: "\${DIR}/out.log", exactly_once: true, queue: { mode: reliable, max_size: 69632 } }
`;
    const run = async (dest: string) => {
      process.env.DIR = dir;
      agent = await testAgent(yaml('').replace(/\ndestinations:\n.*\n/, dest));
    };
    await run(blocked);
    await waitFor('the file followed', () => followed().length === 1);
    renameSync(app, path.join(logs, 'app.log.1')); // a name the globs do not match
    writeFileSync(app, 'after 1\n');
    await waitFor('the rotation seen', () => followed().some((f) => f.rotated));
    await agent!.stop();
    // The next run finds the old file under its new name and goes on finishing it, and stops too.
    await run(blocked);
    await waitFor('the rotated file resumed', () => followed().some((f) => f.path.endsWith('app.log.1')));
    await agent!.stop();
    // The run after that must still finish it: its checkpoint now names it as app.log.1.
    await run(draining);
    await waitFor('every line', () => readLines(out).length >= 20_001, 30_000);
    await sleep(300);
    const lines = readLines(out);
    expect(lines.length).toBe(20_001);
    expect(new Set(lines).size).toBe(20_001);
  }, 90_000);

  it('follows every new file under a followed name while an older one is still being finished behind a full ' +
    'queue', async () => {
    const { logs } = setup();
    const app = path.join(logs, 'app.log');
    writeFileSync(app, `${'x'.repeat(150)}\n`.repeat(20_000));
    process.env.DIR = dir;
    // A destination that cannot be reached and a small queue: the first file cannot be finished.
    agent = await testAgent(
      yaml('').replace(
        /\ndestinations:\n.*\n/,
        '\ndestinations:\n  f: { type: sluice, urls: ["ws://127.0.0.1:1"], token: "t", queue: { mode: reliable, ' +
          'max_size: 69632 } }\n',
      ),
    );
    await waitFor('the file followed', () => followed().length === 1);
    const inode = (f: string) => String(statSync(f).ino);
    for (let i = 1; i <= 3; i++) {
      renameSync(app, path.join(logs, `app.log.${i}`));
      writeFileSync(app, `new ${i}\n`);
      const ino = inode(app);
      await waitFor(
        `file ${i + 1} followed`,
        () =>
          (agent!.sources.get('app') as FileSource).followed().some((f) => f.path === app && !f.rotated) &&
          checkpointsHave(ino),
        5000,
      );
    }
  }, 60_000);

  it('does not let a rotated file go (and its checkpoint with it) while lines read from it still wait for their ' +
    'commit', async () => {
    const { logs, out } = setup();
    const app = path.join(logs, 'app.log');
    // One read's worth (under 256 KiB), more than the small queue holds: once read, the file is at
    // its end while most of its lines still wait for room, uncommitted.
    writeFileSync(app, Array.from({ length: 1200 }, (_, i) => `line ${i} ${'p'.repeat(150)}\n`).join(''));
    const blocked =
      '\ndestinations:\n  f: { type: sluice, urls: ["ws://127.0.0.1:1"], token: "t", queue: { mode: reliable, ' +
      'max_size: 69632 } }\n';
    const draining =
      '\ndestinations:\n  f: { type: file, path: "${DIR}/out.log", exactly_once: true, queue: { mode: reliable, ' +
      'max_size: 69632 } }\n';
    process.env.DIR = dir;
    agent = await testAgent(yaml('').replace(/\ndestinations:\n.*\n/, blocked));
    await waitFor('the file followed', () => followed().length === 1);
    renameSync(app, path.join(logs, 'app.log.1'));
    writeFileSync(app, 'after\n');
    // Longer than a rotated file is kept open once read to its end (5 s).
    await sleep(6500);
    expect(followed().some((f) => f.path === app && f.rotated && f.committed < 1200 * 160)).toBe(true);
    await agent!.stop();
    agent = await testAgent(yaml('').replace(/\ndestinations:\n.*\n/, draining));
    await waitFor('every line', () => readLines(out).length >= 1201, 20_000);
    await sleep(300);
    expect(new Set(readLines(out)).size).toBe(1201);
  }, 60_000);

  it(
    'after a restart, leaves alone a file in the directory whose inode was checkpointed but whose first bytes ' +
      'changed',
    async () => {
      const { logs, out, app } = await readTwoLinesAndStop();
      const other = path.join(logs, 'other.txt');
      renameSync(app, other);
      // Same inode, other content and another birth time (a reused inode under an unrelated file; the
      // birth time is set back in the checkpoint, as the test cannot make the kernel reuse an inode):
      // not ours to read.
      writeFileSync(other, 'unrelated 1\nunrelated 2\nunrelated 3\n', { flag: 'r+' });
      writeFileSync(app, 'b1\n');
      const file = path.join(dir, 'state/checkpoints/app.json');
      const cp = checkpoints();
      for (const f of cp.files as { birth?: number }[]) f.birth = (f.birth ?? 0) - 60_000;
      writeFileSync(file, JSON.stringify(cp));
      await start();
      await waitFor('the new file', () => readLines(out).length >= 3);
      await sleep(300);
      expect(readLines(out)).toEqual(['a1', 'a2', 'b1']);
      expect(followed().map((f) => f.path)).toEqual([app]);
    },
  );

  it(
    'after a restart, reads from its start a file cut (copytruncate) and renamed while sluice was ' + 'stopped',
    async () => {
      const { logs, out, app } = await readTwoLinesAndStop();
      // While stopped: copytruncate, the writer goes on in the cut file, then it is renamed away.
      truncateSync(app, 0);
      appendFileSync(app, 'c1 written after the cut\nc2\n');
      renameSync(app, path.join(logs, 'app.log.1'));
      writeFileSync(app, 'b1\n');
      await start();
      await waitFor('the cut file and the new one', () => readLines(out).length >= 5);
      await sleep(300);
      expect(readLines(out).sort()).toEqual(['a1', 'a2', 'b1', 'c1 written after the cut', 'c2']);
    },
  );

  it('follows copytruncate: the shrunken file is read again from its start, nothing lost or repeated', async () => {
    const { logs, out } = setup();
    const app = path.join(logs, 'app.log');
    writeFileSync(app, 'c1\nc2\nc3\n');
    await start();
    await waitFor('first lines', () => readLines(out).length === 3);
    copyFileSync(app, path.join(logs, 'app.log.1'));
    truncateSync(app, 0);
    await sleep(150);
    appendFileSync(app, 'd1\n');
    await waitFor('line after truncation', () => readLines(out).length === 4);
    await sleep(200);
    expect(readLines(out)).toEqual(['c1', 'c2', 'c3', 'd1']);
  });

  it('notices a truncate-and-regrow past the old offset by the fingerprint', async () => {
    const { logs, out } = setup();
    const app = path.join(logs, 'app.log');
    writeFileSync(app, 'x1\n');
    await start();
    await waitFor('first line', () => readLines(out).length === 1);
    writeFileSync(app, 'completely new content\n'); // truncates and writes more than before
    await waitFor('new content', () => readLines(out).length === 2);
    expect(readLines(out)).toEqual(['x1', 'completely new content']);
  });

  it('does not let a reused inode inherit an old offset (fingerprint mismatch starts at 0)', async () => {
    const { logs, out } = setup();
    const app = path.join(logs, 'app.log');
    writeFileSync(app, 'fresh file line 1\nfresh file line 2\n');
    const st = statSync(app, { bigint: true });
    // A checkpoint for this very device and inode, left by an older file with other first bytes.
    mkdirSync(path.join(dir, 'state/checkpoints'), { recursive: true });
    writeFileSync(
      path.join(dir, 'state/checkpoints/app.json'),
      JSON.stringify({
        version: 1,
        files: [
          {
            path: app,
            dev: String(st.dev),
            ino: String(st.ino),
            fingerprint: 'deadbeef',
            fingerprint_bytes: 10,
            offset: 18,
          },
        ],
      }),
    );
    await start();
    await waitFor('both lines', () => readLines(out).length === 2);
    expect(readLines(out)).toEqual(['fresh file line 1', 'fresh file line 2']);
  });

  it('cuts lines longer than max_line_length and counts them', async () => {
    const { logs, out } = setup();
    writeFileSync(path.join(logs, 'a.log'), `${'L'.repeat(100)}\nok\n`);
    await start('    max_line_length: 10');
    await waitFor('two lines', () => readLines(out).length === 2);
    expect(readLines(out)).toEqual(['L'.repeat(10), 'ok']);
    expect(agent!.stats().sources.app!.truncated).toBe(1);
  });

  it('picks up files that appear in a watched directory', async () => {
    const { logs, out } = setup();
    await start();
    writeFileSync(path.join(logs, 'late.log'), 'late line\n');
    writeFileSync(path.join(logs, 'ignored.txt'), 'not matched\n');
    await waitFor('the new file', () => readLines(out).length === 1);
    await sleep(200);
    expect(readLines(out)).toEqual(['late line']);
    expect(agent!.stats().sources.app!.received).toBe(1);
  });

  it('advances the checkpoint only past lines the queue accepted', async () => {
    const { logs } = setup();
    const app = path.join(logs, 'app.log');
    const line = `${'q'.repeat(99)}\n`;
    writeFileSync(app, line.repeat(5000)); // 500 000 bytes
    // A port nobody listens on: the destination cannot deliver, so the queue fills and stays full.
    const sink = net.createServer();
    await new Promise<void>((r) => sink.listen(0, '127.0.0.1', r));
    const deadPort = (sink.address() as net.AddressInfo).port;
    await new Promise<void>((r) => sink.close(() => r()));
    process.env.DIR = dir;
    agent = await testAgent(`
state_dir: ${dir}/state
shutdown_timeout: 100ms
sources:
  app: { type: file, paths: ["${logs}/*.log"], poll_interval: 50ms, checkpoint_interval: 50ms }
destinations:
  stuck:
    type: syslog
    address: 127.0.0.1:${deadPort}
    batch_size: 10
    queue: { mem_buf_length: 50 }
pipelines:
  p: { from: [app], to: [stuck] }
`);
    try {
      await waitFor('the queue to fill', () => agent!.queues.get('stuck')!.isFull());
      await sleep(300);
      const accepted = agent.stats().destinations.stuck!.queue.pushed;
      const offset = checkpoints().files[0]!.offset;
      // The checkpoint covers exactly the lines the queue took, never more.
      expect(offset % 100).toBe(0);
      expect(offset / 100).toBeLessThanOrEqual(accepted);
      expect(offset).toBeLessThan(500_000);
    } finally {
      await agent.stop();
      agent = undefined;
    }
  });

  it('keeps working when a followed file is deleted', async () => {
    const { logs, out } = setup();
    const a = path.join(logs, 'a.log');
    writeFileSync(a, 'first\n');
    await start();
    await waitFor('first', () => readLines(out).length === 1);
    unlinkSync(a);
    writeFileSync(path.join(logs, 'b.log'), 'second\n');
    await waitFor('second', () => readLines(out).length === 2);
    expect(readLines(out)).toEqual(['first', 'second']);
  });
});
