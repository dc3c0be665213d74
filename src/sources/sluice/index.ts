import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';
import type { z } from 'zod';
import { RateLimitedLog } from '../../log.js';
import { listen, tlsServerOptions } from '../../net/sockets.js';
import { CLOSE, PATH, SUBPROTOCOL, WireError } from '../../protocol/sluice-wire.js';
import { RecordDecoder } from '../../protocol/record-codec.js';
import type { LogRecord } from '../../record.js';
import { countDrop, type SourceStats } from '../../stats.js';
import type { Source, SourceContext } from '../types.js';
import type { sluiceSourceSchema } from './config.js';
import { AgentConnection, type AgentConnectionHost } from './connection.js';
import { HighWaterMarks } from './hwm-store.js';

type Config = z.infer<typeof sluiceSourceSchema>;

const digest = (s: string) => createHash('sha256').update(s).digest();

/** The central server end of the sluice protocol. See docs/protocol.md. */
export class SluiceSource implements Source, AgentConnectionHost {
  readonly stats: SourceStats;
  readonly name: string;
  private server: http.Server | https.Server | null = null;
  /** Created at start: `ws` is loaded only by configs that use the sluice protocol. */
  private wss: WebSocketServer | null = null;
  private marks: HighWaterMarks | null = null;
  private readonly tokenDigests: Buffer[];
  private readonly sockets = new Set<WebSocket>();
  readonly quiet = new RateLimitedLog(1000);
  private stopping = false;
  /** Batches received again and not queued a second time. */
  duplicates = 0;
  /** Per sender, the highest sequence queued (committed or on its way): at or above the durable mark. */
  private readonly dispatched = new Map<string, number>();

  constructor(
    readonly config: Config,
    private readonly ctx: SourceContext,
  ) {
    this.name = ctx.name;
    this.stats = ctx.counters.of(ctx.name);
    this.tokenDigests = config.tokens.map(digest);
  }

  /** The port it listens on (0 before start). */
  get port(): number {
    return (this.server?.address() as AddressInfo | null | undefined)?.port ?? 0;
  }

  describe(): string {
    const a = this.server?.address() as AddressInfo | null | undefined;
    const where = a
      ? `${a.family === 'IPv6' ? `[${a.address}]` : a.address}:${a.port}`
      : `${this.config.address.host}:${this.config.address.port}`;
    return `${this.config.tls ? 'wss' : 'ws'}://${where}${PATH}`;
  }

  /** Constant-time: every configured token is compared, in full, whatever matches. */
  private authorized(header: string | undefined): boolean {
    const m = /^Bearer ([\x21-\x7e]+)$/.exec(header ?? '');
    const given = digest(m?.[1] ?? '');
    let ok = false;
    for (const d of this.tokenDigests) ok = timingSafeEqual(d, given) || ok;
    return ok && m !== null;
  }

  async start(): Promise<void> {
    const { WebSocketServer } = await import('ws');
    this.wss = new WebSocketServer({
      noServer: true,
      maxPayload: this.config.max_frame_size,
      perMessageDeflate: false,
      handleProtocols: (offered) => (offered.has(SUBPROTOCOL) ? SUBPROTOCOL : false),
    });
    this.marks = new HighWaterMarks(this.ctx.stateDir, this.name, (reason) =>
      this.ctx.logger.error(
        { reason },
        'sender high-water marks are damaged; batches agents send again may be queued twice',
      ),
    );
    const t = this.config.tls;
    // Node checks header and request timeouts every connectionsCheckingInterval (30 s by default).
    const checking = {
      connectionsCheckingInterval: Math.max(100, Math.min(1000, Math.floor(this.config.handshake_timeout / 2))),
    };
    const server = t ? https.createServer({ ...checking, ...tlsServerOptions(t) }) : http.createServer(checking);
    // Slowloris: an upgrade whose headers do not arrive in time is cut off.
    server.headersTimeout = this.config.handshake_timeout;
    server.requestTimeout = this.config.handshake_timeout;
    server.on('request', (_req, res) => {
      res
        .writeHead(426, { 'content-type': 'text/plain', upgrade: 'websocket' })
        .end(`sluice protocol: WebSocket upgrade to ${PATH} expected\n`);
    });
    server.on('upgrade', (req, socket, head) => this.upgrade(req, socket, head));
    server.on('clientError', (err, socket) => {
      this.stats.connectionErrors++;
      this.quiet.log('client', (extra) =>
        this.ctx.logger.warn(
          { reason: err.message, ...extra },
          'closing a connection that sent no valid HTTP upgrade in time',
        ),
      );
      socket.destroy();
    });
    server.on('tlsClientError', (err) => {
      this.stats.connectionErrors++;
      this.quiet.log('tls', (extra) =>
        this.ctx.logger.warn({ reason: err.message, ...extra }, 'TLS handshake failed; connection closed'),
      );
    });
    await listen(server, this.config.address);
    server.on('error', (err) => this.ctx.logger.error({ err: err.message }, 'listener error'));
    this.server = server;
  }

  private refuse(socket: Duplex, status: number, text: string, why: string): void {
    this.stats.connectionsRejected++;
    this.quiet.log(`refuse:${status}`, (extra) =>
      this.ctx.logger.warn({ status, reason: why, ...extra }, 'refused a connection before reading any data'),
    );
    socket.end(`HTTP/1.1 ${status} ${text}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n`);
    socket.destroy();
  }

  private upgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const url = (req.url ?? '').split('?')[0];
    if (url !== PATH) {
      this.refuse(socket, 404, 'Not Found', `path ${url}`);
      return;
    }
    if (!this.authorized(req.headers.authorization)) {
      this.refuse(socket, 401, 'Unauthorized', 'missing or unknown bearer token');
      return;
    }
    const offered = String(req.headers['sec-websocket-protocol'] ?? '')
      .split(',')
      .map((s) => s.trim());
    if (!offered.includes(SUBPROTOCOL)) {
      this.refuse(socket, 400, 'Bad Request', `no supported subprotocol in ${JSON.stringify(offered)}`);
      return;
    }
    if (this.stopping || this.ctx.shedding?.()) {
      this.refuse(socket, 503, 'Service Unavailable', this.stopping ? 'shutting down' : 'load shedding');
      return;
    }
    if (this.sockets.size >= this.config.max_connections) {
      this.refuse(socket, 503, 'Service Unavailable', 'max_connections reached');
      return;
    }
    const wss = this.wss;
    if (!wss) {
      this.refuse(socket, 503, 'Service Unavailable', 'not started');
      return;
    }
    wss.handleUpgrade(req, socket, head, (ws) => this.connection(ws, req.socket.remoteAddress ?? 'unknown'));
  }

  private connection(ws: WebSocket, peer: string): void {
    this.stats.connectionsAccepted++;
    this.sockets.add(ws);
    // What happens to these records counts on this source: the agents' source names mean nothing here.
    const decoder = new RecordDecoder(this.ctx.counters.as(this.name));
    const connection = new AgentConnection(ws, this, decoder, this.ctx.logger.child({ peer }));
    ws.on('close', () => {
      connection.onClose();
      this.sockets.delete(ws);
    });
  }

  resumeFrom(sender: string): number {
    return this.marks!.get(sender);
  }

  commitMark(sender: string, seq: number): Promise<void> {
    return this.marks!.commit(sender, seq);
  }

  forgetQueued(sender: string): void {
    this.dispatched.set(sender, this.marks!.get(sender));
  }

  /**
   * Queues the records of a batch that this sender's marks do not cover (the durable high-water
   * mark, or what an earlier batch already queued), after waiting for room. Returns the commit of
   * what it queued. Records at or below the mark were taken before (a resend after a lost ack) and
   * are skipped.
   */
  async dispatchBatch(
    sender: string,
    firstSeq: number,
    payloads: Buffer[],
    decoder: RecordDecoder,
  ): Promise<{ committed: Promise<void> | undefined }> {
    if (this.ctx.shedding?.()) throw new Error('load shedding: the server cannot write its queues; retry later');
    const lastSeq = firstSeq + payloads.length - 1;
    const mark = Math.max(this.marks!.get(sender), this.dispatched.get(sender) ?? -1);
    if (firstSeq > mark + 1 && mark >= 0) {
      // A gap: records between the mark and this batch never came. Possible only if the agent lost
      // them (its memory queue died): take what comes, and say so.
      this.ctx.logger.warn(
        { sender, expected: mark + 1, got: firstSeq },
        'sequence gap from an agent: records in between were lost on its side',
      );
    }
    const skip = Math.max(0, Math.min(payloads.length, mark - firstSeq + 1));
    if (skip > 0) {
      this.duplicates += skip;
      countDrop(this.stats.dropped, 'duplicate', skip);
    }
    if (skip === payloads.length) return { committed: undefined };
    const records: LogRecord[] = new Array(payloads.length - skip);
    let bytes = 0;
    for (let i = skip; i < payloads.length; i++) {
      let r: LogRecord;
      try {
        r = decoder.decode(payloads[i]!);
      } catch (err) {
        throw new WireError(`record ${i}: ${(err as Error).message}`);
      }
      // The record's place in a stream that survives resends: a followed file's line keeps the
      // agent's; anything else is this sender's sequence number.
      if (r.stream === undefined) r.setStream(sender, firstSeq + i);
      records[i - skip] = r;
      bytes += r.raw.length;
    }
    this.stats.received += records.length;
    this.stats.receivedBytes += bytes;
    const d = this.ctx.router.dispatch(this.name, records, 'keep_waiting');
    if (d?.accepted) await d.accepted;
    this.dispatched.set(sender, Math.max(lastSeq, this.dispatched.get(sender) ?? -1));
    return { committed: d?.committed };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    for (const ws of this.sockets) ws.close(CLOSE.goingAway, 'server shutting down');
    const server = this.server;
    this.server = null;
    if (server) {
      server.closeAllConnections?.();
      await new Promise<void>((r) => server.close(() => r()));
    }
    for (const ws of this.sockets) ws.terminate();
    await this.marks?.close();
  }
}
