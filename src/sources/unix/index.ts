import { readFileSync } from 'node:fs';
import { chmod, chown, lstat, unlink } from 'node:fs/promises';
import net from 'node:net';
import type { z } from 'zod';
import { SyslogStreamConnection } from '../syslog-tcp/connection.js';
import { StreamListenerSource } from '../stream-listener.js';
import type { SourceContext } from '../types.js';
import type { unixSourceSchema } from './config.js';

type Config = z.output<typeof unixSourceSchema>;

/** The number of a group named in /etc/group (no NSS lookups: a local group is what a socket file needs). */
export function groupId(group: string | number, file = '/etc/group'): number {
  if (typeof group === 'number') return group;
  if (/^\d+$/.test(group)) return Number(group);
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const [name, , gid] = line.split(':');
    if (name === group && gid !== undefined && /^\d+$/.test(gid)) return Number(gid);
  }
  throw new Error(`group ${JSON.stringify(group)} is not in ${file}`);
}

/** True when a process accepts connections on the socket at `path`. */
function listening(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * Syslog from local processes over a Unix stream socket (`/dev/log`). Each connection is a syslog
 * stream as on TCP (SyslogStreamConnection), framed by NUL, LF or octet counts; a full queue pauses
 * its reads.
 */
export class UnixSource extends StreamListenerSource {
  constructor(
    private readonly config: Config,
    ctx: SourceContext,
  ) {
    super(ctx, config.max_connections);
  }

  describe(): string {
    return `unix://${this.config.path}`;
  }

  async start(): Promise<void> {
    const path = this.config.path;
    const gid = this.config.group === undefined ? undefined : groupId(this.config.group);
    const existing = await lstat(path).catch(() => null);
    if (existing) {
      if (!existing.isSocket())
        throw new Error(`${path} exists and is not a socket: move it away, or choose another path`);
      if (await listening(path))
        throw new Error(`${path} is taken: another process listens on it (another syslog daemon, or journald?)`);
      await unlink(path); // left by a process that died
      this.ctx.logger.info({ path }, 'replaced a stale socket file');
    }
    const server = net.createServer((socket) => this.onConnection(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    this.server = server;
    server.on('error', (err) => this.ctx.logger.error({ err, path }, 'unix socket listener error'));
    await chmod(path, Number.parseInt(this.config.mode, 8));
    if (gid !== undefined) await chown(path, -1, gid);
  }

  private onConnection(socket: net.Socket): void {
    if (!this.admit(socket, { path: this.config.path })) return;
    const origin = {
      source: this.name,
      from: this.ctx.hostname,
      hostname: this.ctx.hostname,
      format: 'syslog' as const,
      lenient: this.config.lenient,
      counters: this.ctx.counters,
    };
    const connection = new SyslogStreamConnection(socket, origin, {
      maxMessageSize: this.config.max_message_size,
      oversize: this.config.oversize,
      framing: 'unix',
      stats: this.stats,
      dispatch: (batch) => this.dispatchBatch(batch),
      badFraming: (reason) =>
        this.quiet.log('framing', (extra) =>
          this.ctx.logger.warn(
            { path: this.config.path, reason, ...extra },
            'closing connection: not valid syslog framing',
          ),
        ),
    });
    socket.on('data', (chunk: Buffer) => connection.onData(chunk));
    socket.on('end', () => connection.onEnd());
    socket.on('error', (err) => {
      this.stats.connectionErrors++;
      this.ctx.logger.debug({ err: err.message }, 'connection error');
    });
  }
}
