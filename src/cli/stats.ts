import { loadConfig } from './config.js';
import type { AgentStatus } from '../stats.js';

/** `sluice stats`: a table of a running agent's counters, read from its admin listener. */

const num = (n: number) => n.toLocaleString('en');
const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
const bytes = (b: number) =>
  b < 1024
    ? `${b}B`
    : b < 1 << 20
      ? `${(b / 1024).toFixed(1)}KiB`
      : b < 1 << 30
        ? `${(b / (1 << 20)).toFixed(1)}MiB`
        : `${(b / (1 << 30)).toFixed(2)}GiB`;
const age = (ms: number | null) =>
  ms === null
    ? '-'
    : ms < 1000
      ? '<1s'
      : ms < 60_000
        ? `${Math.round(ms / 1000)}s`
        : ms < 3_600_000
          ? `${Math.round(ms / 60_000)}m`
          : `${(ms / 3_600_000).toFixed(1)}h`;

function table(header: string[], rows: string[][], numeric: Set<number>): string {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => r[c]!.length)));
  return all
    .map((r) =>
      r
        .map((cell, c) => (numeric.has(c) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
        .join('  ')
        .trimEnd(),
    )
    .join('\n');
}

/** The table; with `prev`, rates over the time between the two. */
export function formatStats(s: AgentStatus, prev?: AgentStatus): string {
  const secs = prev ? (s.time - prev.time) / 1000 : 0;
  const rate = (now: number, then: number | undefined) =>
    then === undefined || secs <= 0 ? '-' : num(Math.max(0, Math.round((now - then) / secs)));
  const state = s.gate.latched
    ? `LOAD SHEDDING (${s.gate.reason})`
    : s.ready
      ? 'ready'
      : `NOT READY (${s.notReady.join('; ')})`;
  const out = [
    `sluice ${s.version}, pid ${s.pid}, up ${age(s.uptimeSeconds * 1000)}, ${state}, rss ${bytes(s.process.rssBytes)}`,
    '',
  ];
  out.push(
    table(
      ['SOURCE', 'ADDRESS', 'MSG/S', 'RECEIVED', 'BYTES', 'PARSE_ERR', 'OVERSIZE', 'DROPPED', 'REPAIRED', 'CONNS'],
      Object.entries(s.sources).map(([name, x]) => [
        name,
        x.address,
        rate(x.received, prev?.sources[name]?.received),
        num(x.received),
        bytes(x.receivedBytes),
        num(x.parseErrors),
        num(x.truncated),
        Object.keys(x.dropped).length
          ? Object.entries(x.dropped)
              .map(([r, n]) => `${r}=${num(n)}`)
              .join(',')
          : '0',
        Object.keys(x.repaired ?? {}).length
          ? Object.entries(x.repaired)
              .map(([r, n]) => `${r}=${num(n)}`)
              .join(',')
          : '0',
        num(x.connectionsAccepted),
      ]),
      new Set([2, 3, 4, 5, 6, 9]),
    ),
  );
  out.push('');
  out.push(
    table(
      [
        'DESTINATION',
        'STATE',
        'MSG/S',
        'DELIVERED',
        'FAILURES',
        'REPLAYED',
        'DEAD_LETTERS',
        'QUEUE',
        'RECORDS',
        'FILL',
        'OLDEST',
        'DROPPED',
      ],
      Object.entries(s.destinations).map(([name, d]) => {
        const q = d.queue;
        const fill = q.mode === 'memory' ? q.records / q.capacityRecords : q.diskBytes / q.capacityBytes;
        return [
          name,
          d.connected ? 'connected' : q.records > 0 && d.failures > 0 ? 'down' : d.delivered > 0 ? 'ok' : 'idle',
          rate(d.delivered, prev?.destinations[name]?.delivered),
          num(d.delivered),
          num(d.failures),
          num(d.replayed),
          num(sum(d.deadLettered ?? {})),
          q.mode,
          num(q.records),
          `${(100 * (fill || 0)).toFixed(1)}%`,
          age(q.oldestReceivedAt === null ? null : s.time - q.oldestReceivedAt),
          num(sum(q.dropped)),
        ];
      }),
      new Set([2, 3, 4, 5, 6, 8, 9, 11]),
    ),
  );
  const orphans = Object.entries(s.orphans);
  if (orphans.length > 0) {
    out.push('');
    out.push(
      table(
        ['ORPHAN', 'RECORDS', 'DIRECTORY', 'DRAINING_INTO'],
        orphans.map(([n, o]) => [n, num(o.records), o.dir, o.drainingInto ?? '-']),
        new Set([1]),
      ),
    );
  }
  return out.join('\n');
}

export async function fetchStatus(url: string): Promise<AgentStatus> {
  const r = await fetch(`${url.replace(/\/$/, '')}/api/v1/stats`, { signal: AbortSignal.timeout(5000) });
  if (!r.ok) throw new Error(`${url}: HTTP ${r.status}`);
  return (await r.json()) as AgentStatus;
}

/** Prints once, or every `interval` ms until interrupted. */
export async function showStats(
  url: string,
  watch: number | null,
  out: (s: string) => void,
  err: (s: string) => void,
): Promise<number> {
  let prev: AgentStatus | undefined;
  for (;;) {
    let s: AgentStatus;
    try {
      s = await fetchStatus(url);
    } catch (e) {
      err(
        `sluice stats: cannot read ${url}/api/v1/stats: ${(e as Error).message} (is sluice running, with the admin ` +
          `listener on?)`,
      );
      if (watch === null) return 1;
      await new Promise((r) => setTimeout(r, watch));
      continue;
    }
    // One write per screen: the clear and the table arrive together, with no blank moment between.
    out((watch !== null ? '\x1b[H\x1b[2J' : '') + formatStats(s, prev));
    if (watch === null) return 0;
    prev = s;
    await new Promise((r) => setTimeout(r, watch));
  }
}

/** `sluice stats [SECONDS] [--watch] [--url URL]`: the admin listener's figures, once or every SECONDS. */
export async function statsCommand(
  file: string,
  values: { url?: string; watch?: boolean },
  interval: string | undefined,
): Promise<number> {
  let url = values.url;
  if (!url) {
    const loaded = await loadConfig(file);
    if (!loaded) return 1;
    const a = loaded.config.admin;
    if (!a.enabled) {
      process.stderr.write(`sluice stats: the admin listener is off in ${file} (admin.enabled)\n`);
      return 2;
    }
    const host =
      a.address.host === '0.0.0.0'
        ? '127.0.0.1'
        : a.address.host === '::'
          ? '[::1]'
          : a.address.host.includes(':')
            ? `[${a.address.host}]`
            : a.address.host;
    url = `http://${host}:${a.address.port}`;
  }
  const seconds = interval !== undefined ? Number(interval) : 2;
  if (values.watch && !(seconds > 0)) {
    process.stderr.write(`sluice stats: --watch takes a number of seconds, got ${interval}\n`);
    return 2;
  }
  return showStats(
    url,
    values.watch ? seconds * 1000 : null,
    (t) => process.stdout.write(`${t}\n`),
    (t) => process.stderr.write(`${t}\n`),
  );
}
