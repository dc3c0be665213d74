import { readFileSync } from 'node:fs';
import net from 'node:net';
import tls from 'node:tls';
import type { z } from 'zod';
import { parseRsp, RELP_MAX_TXNR, RELP_OFFERS, RelpParser, relpFrame, type RelpFrame } from '../../protocol/relp.js';
import type { LogRecord } from '../../record.js';
import { renderRecord } from '../format.js';
import { QueueDrainer } from '../queue-drainer.js';
import type { DestinationContext } from '../types.js';
import type { relpDestinationSchema } from './config.js';

type Config = z.output<typeof relpDestinationSchema>;

interface Connection {
  socket: net.Socket;
  nextTxnr: number;
  waiting: Map<number, (rsp: { code: number; text: string }) => void>;
  failure: Error | null;
}

/** The RELP client: each batch is a window of `syslog` commands, done when every one is answered 200. */
export class RelpDestination extends QueueDrainer {
  private conn: Connection | null = null;
  private readonly tlsOptions: tls.ConnectionOptions | null;

  constructor(
    private readonly config: Config,
    ctx: DestinationContext,
  ) {
    super(ctx, config.backoff, config.window);
    const t = config.tls;
    this.tlsOptions = t
      ? {
          ca: t.ca ? readFileSync(t.ca) : undefined,
          cert: t.cert ? readFileSync(t.cert) : undefined,
          key: t.key ? readFileSync(t.key) : undefined,
          servername: t.server_name ?? (net.isIP(config.address.host) ? undefined : config.address.host),
          rejectUnauthorized: t.verify,
        }
      : null;
  }

  describe(): string {
    return `relp${this.tlsOptions ? '+tls' : ''}://${this.config.address.host}:${this.config.address.port} (${this.config.format}, window ${this.config.window})`;
  }

  protected async deliver(records: LogRecord[]): Promise<void> {
    let c = this.conn;
    // Reconnect well before the transaction number would wrap.
    if (c && c.nextTxnr + records.length + 2 > RELP_MAX_TXNR) {
      await this.closeGracefully(c);
      c = null;
    }
    if (!c || c.failure || c.socket.destroyed) c = await this.connect();
    const answers = records.map((r) => {
      const txnr = c.nextTxnr++;
      const p = this.request(c, txnr);
      c.socket.write(relpFrame(txnr, 'syslog', renderRecord(r, this.config.format, this.ctx.hostname)));
      return p;
    });
    this.stats.sent += records.length;
    const results = await Promise.all(answers);
    const bad = results.find((r) => r.code !== 200);
    if (bad) {
      this.stats.serverErrors = (this.stats.serverErrors ?? 0) + results.filter((r) => r.code !== 200).length;
      // Not taken: the whole batch is sent again on a new connection (never dropped).
      this.drop(c, new Error(`server answered ${bad.code} ${bad.text}`));
      throw new Error(`RELP server answered ${bad.code} ${bad.text}`);
    }
  }

  private request(c: Connection, txnr: number): Promise<{ code: number; text: string }> {
    return new Promise((resolve, reject) => {
      if (c.failure) return reject(c.failure);
      const timer = setTimeout(() => this.drop(c, new Error(`no answer to transaction ${txnr} in ${this.config.response_timeout} ms`)), this.config.response_timeout);
      timer.unref();
      c.waiting.set(txnr, (rsp) => {
        clearTimeout(timer);
        if (rsp.code === -1) reject(c.failure ?? new Error('connection lost'));
        else resolve(rsp);
      });
    });
  }

  /** Breaks the connection: every unanswered transaction fails (its messages are sent again). */
  private drop(c: Connection, err: Error): void {
    c.failure ??= err;
    for (const f of c.waiting.values()) f({ code: -1, text: err.message });
    c.waiting.clear();
    c.socket.destroy();
    if (this.conn === c) {
      this.conn = null;
      this.stats.connected = false;
    }
  }

  private async connect(): Promise<Connection> {
    const { host, port } = this.config.address;
    this.stats.reconnectAttempts++;
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = this.tlsOptions ? tls.connect({ host, port, ...this.tlsOptions }) : net.connect({ host, port });
      const timer = setTimeout(() => s.destroy(new Error(`connect timeout after ${this.config.connect_timeout} ms`)), this.config.connect_timeout);
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(new Error(`cannot connect to ${host}:${port}: ${err.message}`));
      });
      s.once(this.tlsOptions ? 'secureConnect' : 'connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
    });
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    const c: Connection = { socket, nextTxnr: 1, waiting: new Map(), failure: null };
    const parser = new RelpParser(1 << 20);
    socket.on('data', (chunk: Buffer) => {
      const frames: RelpFrame[] = [];
      try {
        parser.push(chunk, frames);
      } catch (err) {
        return this.drop(c, new Error(`bad frame from the server: ${(err as Error).message}`));
      }
      for (const f of frames) {
        if (f.command === 'rsp') {
          const waiter = c.waiting.get(f.txnr);
          if (!waiter) return this.drop(c, new Error(`answer for transaction ${f.txnr}, which is not open`));
          c.waiting.delete(f.txnr);
          waiter(parseRsp(f.data));
        } else if (f.command === 'serverclose') {
          this.drop(c, new Error('the server closed the session (serverclose)'));
        }
      }
    });
    socket.on('error', (err) => this.drop(c, err));
    socket.on('close', () => this.drop(c, new Error('connection closed by the server')));
    const open = this.request(c, c.nextTxnr);
    socket.write(relpFrame(c.nextTxnr++, 'open', RELP_OFFERS));
    const rsp = await open;
    if (rsp.code !== 200) {
      this.drop(c, new Error(`open refused: ${rsp.code} ${rsp.text}`));
      throw new Error(`RELP open refused: ${rsp.code} ${rsp.text}`);
    }
    this.conn = c;
    this.stats.connected = true;
    this.stats.reconnects++;
    this.ctx.logger.info({ address: `${host}:${port}` }, 'RELP session open');
    return c;
  }

  private async closeGracefully(c: Connection): Promise<void> {
    const done = this.request(c, c.nextTxnr).catch(() => undefined);
    c.socket.write(relpFrame(c.nextTxnr++, 'close'));
    await Promise.race([done, new Promise((r) => setTimeout(r, 2000).unref())]);
    this.drop(c, new Error('closed'));
  }

  protected async release(force: boolean): Promise<void> {
    const c = this.conn;
    if (!c) return;
    if (force) this.drop(c, new Error('stopped'));
    else await this.closeGracefully(c);
  }
}
