import { DESTINATION_TYPES } from '../../src/components.js';
import { describe, expect, it } from 'vitest';
import { ConfigError, parseConfigText, type ConfigProblem } from '../../src/config/load.js';
import { formatSize, parseDuration, parseSize } from '../../src/config/units.js';
import { memBufLength } from '../../src/config/types.js';

const base = `
state_dir: var/state
sources:
  udp_in:
    type: syslog_udp
    address: 127.0.0.1:5514
destinations:
  out:
    type: file
    path: var/log/\${HOST}.log
pipelines:
  main:
    from: [udp_in]
    to: [out]
`;

function problems(text: string, env: NodeJS.ProcessEnv = {}): ConfigProblem[] {
  try {
    parseConfigText(text, 'test.yaml', env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as ConfigError).problems;
  }
  throw new Error('expected the config to be rejected');
}

describe('units', () => {
  it('parses sizes and durations', () => {
    expect(parseSize('64KiB')).toBe(65536);
    expect(parseSize('10MB')).toBe(10_000_000);
    expect(parseSize('1.5 GiB')).toBe(1.5 * 1024 ** 3);
    expect(parseSize(512)).toBe(512);
    expect(parseSize('12 bananas')).toBeNull();
    expect(parseSize(-1)).toBeNull();
    expect(parseDuration('50ms')).toBe(50);
    expect(parseDuration('1.5s')).toBe(1500);
    expect(parseDuration('5m')).toBe(300_000);
    expect(parseDuration('2h')).toBe(7_200_000);
    expect(parseDuration(0)).toBe(0);
    expect(parseDuration(50)).toBeNull();
    expect(parseDuration('5 fortnights')).toBeNull();
  });

  it('formats sizes in the largest unit they reach, rounded down to two decimals', () => {
    expect(formatSize(64 * 1024 ** 2)).toBe('64MiB');
    expect(formatSize(1536 * 1024)).toBe('1.5MiB');
    expect(formatSize(1024 ** 3)).toBe('1GiB');
    expect(formatSize(1024 ** 3 - 4096)).toBe('1023.99MiB');
    expect(formatSize(5 * 1024 ** 2 + 777)).toBe('5MiB');
    expect(formatSize(1500)).toBe('1.46KiB');
    expect(formatSize(1023)).toBe('1023B');
    expect(formatSize(0)).toBe('0B');
    // A value read back never exceeds the size it came from.
    for (const bytes of [1024 ** 3 - 4096, 5 * 1024 ** 2 + 777, 3 * 1024 ** 4 - 1])
      expect(parseSize(formatSize(bytes))!).toBeLessThanOrEqual(bytes);
  });
});

describe('parseConfigText', () => {
  it('fills in defaults and converts sizes, durations and addresses', () => {
    const { config, warnings } = parseConfigText(base, 'test.yaml', {});
    expect(warnings).toEqual([]);
    expect(config.sources.udp_in).toMatchObject({
      type: 'syslog_udp',
      address: { host: '127.0.0.1', port: 5514 },
      max_message_size: 65536,
      lenient: false,
    });
    expect(config.destinations.out).toMatchObject({
      type: 'file',
      path: 'var/log/${HOST}.log',
      fsync: true,
      queue: {
        mode: 'memory',
        full: 'block',
        qout_size: 1000,
        block_timeout: 30_000,
        prealloc: false,
        mem_buf_size: 64 * 1024 ** 2,
      },
    });
    expect(memBufLength(config.destinations.out!.queue)).toBe(100_000);
    expect(memBufLength({ mode: 'normal' })).toBe(10_000);
    expect(config.shutdown_timeout).toBe(10_000);
  });

  it('reports an unknown key with file, line, column and key path', () => {
    const text = base.replace('    address: 127.0.0.1:5514', '    address: 127.0.0.1:5514\n    adress: 1.2.3.4:1');
    expect(problems(text)).toEqual([
      {
        severity: 'error',
        file: 'test.yaml',
        line: 7,
        column: 5,
        path: 'sources.udp_in.adress',
        message: 'unknown key',
      },
    ]);
  });

  it('reports wrong types and bad values where they stand', () => {
    const p = problems(
      base.replace('127.0.0.1:5514', '"5514"').replace('type: file', 'type: file\n    fsync: maybe\n    idle_close: 5'),
    );
    expect(p.map((x) => `${x.line}:${x.column} ${x.path} ${x.message}`)).toEqual([
      '6:14 sources.udp_in.address expected host:port (such as 127.0.0.1:5514 or [::1]:5514), got "5514"',
      '10:12 destinations.out.fsync expected boolean, received string',
      '11:17 destinations.out.idle_close expected a duration with a unit such as 50ms, 10s or 5m, got 5',
    ]);
  });

  it('reports a missing key at its parent and an unknown type with the known ones', () => {
    const p = problems(base.replace('    address: 127.0.0.1:5514\n', '').replace('type: file', 'type: kafka'));
    expect(p.map((x) => `${x.line}:${x.column} ${x.path} ${x.message}`)).toEqual([
      '5:5 sources.udp_in.address is required',
      `8:11 destinations.out.type unknown type "kafka"; known types: ${DESTINATION_TYPES.join(', ')}`,
    ]);
  });

  it('reports dangling names as errors and unused components as warnings', () => {
    const p = problems(base.replace('to: [out]', 'to: [out, nowhere]'));
    expect(p).toEqual([
      {
        severity: 'error',
        file: 'test.yaml',
        line: 14,
        column: 15,
        path: 'pipelines.main.to[1]',
        message: 'no destination named "nowhere" (known: out)',
      },
    ]);
    const extra = `${base}  spare:\n    from: [udp_in]\n    to: [out]\n`.replace(
      'sources:\n',
      'sources:\n  idle:\n    type: syslog_tcp\n    address: 127.0.0.1:1\n',
    );
    const { warnings } = parseConfigText(extra, 'test.yaml', {});
    expect(warnings.map((w) => `${w.line}:${w.column} ${w.path} ${w.message}`)).toEqual([
      '4:3 sources.idle is not used by any pipeline',
    ]);
  });

  it('expands environment variables, with defaults, and leaves template macros alone', () => {
    const text = `hostname: "$\${LITERAL}"\n${base}`
      .replace('var/state', '${STATE:-/tmp/st}')
      .replace('127.0.0.1:5514', '${BIND}')
      .replace('${HOST}.log', () => '${HOST}-${SUFFIX}-${EMPTY:-dflt}.log');
    const { config } = parseConfigText(text, 'test.yaml', { BIND: '127.0.0.1:9999', SUFFIX: 'x', EMPTY: '' });
    expect(config.state_dir).toBe('/tmp/st');
    expect(config.hostname).toBe('${LITERAL}');
    expect(config.sources.udp_in).toMatchObject({ address: { port: 9999 } });
    expect(config.destinations.out).toMatchObject({ path: 'var/log/${HOST}-x-dflt.log' });
  });

  it('refuses a missing environment variable, naming it', () => {
    expect(problems(base.replace('127.0.0.1:5514', '${NOT_SET_ANYWHERE}'))).toEqual([
      {
        severity: 'error',
        file: 'test.yaml',
        line: 6,
        column: 14,
        path: 'sources.udp_in.address',
        message:
          'environment variable NOT_SET_ANYWHERE is not set (use ${NOT_SET_ANYWHERE:-default} to give a default)',
      },
    ]);
  });

  it('reports YAML syntax errors and duplicate keys with their position', () => {
    const [dup] = problems(base.replace('  out:\n', '  out:\n    type: file\n'));
    expect(dup).toMatchObject({ line: 10, message: expect.stringMatching(/unique/i) });
    const [syntax] = problems('sources: [unclosed\n');
    expect(syntax).toMatchObject({ severity: 'error', line: expect.any(Number) });
    expect(problems('')[0]!.message).toMatch(/must hold a mapping/);
  });

  it('rejects an invalid regular expression in a filter', () => {
    const p = problems(base.replace('    to: [out]', '    where:\n      message: "(unclosed"\n    to: [out]'));
    expect(p[0]).toMatchObject({
      path: 'pipelines.main.where.message',
      line: 15,
      message: expect.stringMatching(/invalid regular expression/),
    });
  });
});

describe('reliable queues fed by sources that cannot acknowledge', () => {
  it('are reported as a warning at the pipeline that connects them', () => {
    const text = base.replace(
      '    path: var/log/${HOST}.log',
      '    path: var/log/${HOST}.log\n    queue: { mode: reliable, max_size: 10MiB }',
    );
    const { config, warnings } = parseConfigText(text, 'test.yaml', {});
    expect(config.destinations.out!.queue).toMatchObject({
      mode: 'reliable',
      max_size: 10 * 1024 * 1024,
      sync: 'interval',
      sync_interval: 50,
    });
    expect(warnings.map((w) => `${w.line}:${w.column} ${w.path}`)).toEqual(['14:12 pipelines.main.from[0]']);
    expect(warnings[0]!.message).toMatch(/cannot acknowledge its senders/);
  });
});
