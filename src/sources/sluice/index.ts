import { createHash, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import type { WebSocket, WebSocketServer } from 'ws';
import type { z } from 'zod';
import { RateLimitedLog } from '../../log.js';
import { listen, tlsServerOptions } from '../../net/sockets.js';
import {
  CLOSE,
  decodeBatch,
  parseControl,
  PATH,
  PROTOCOL_VERSION,
  SUBPROTOCOL,
  WireError,
  type ErrorCode,
  type Welcome,
} from '../../protocol/sluice-wire.js';
import { RecordDecoder } from '../../protocol/record-codec.js';
import { type LogRecord } from '../../record.js';
import { countDrop, type SourceStats } from '../../stats.js';
import type { Source, SourceContext } from '../types.js';
import type { sluiceSourceSchema } from './config.js';
import { HighWaterMarks } from './hwm-store.js';

type Config = z.infer<typeof sluiceSourceSchema>;

const WINDOW = 32;

const digest = (s: string) => createHash('sha256').update(s).digest();

/** The central server end of the sluice protocol. See docs/protocol.md. */
export class SluiceSource implements Source {
  readonly stats: SourceStats;
  readonly name: string;
  private server: http.Server | https.Server | null = null;
  /** Created at start: `ws` is loaded only by configs that use the sluice protocol. */
  private wss: WebSocketServer | null = null;
  private marks: HighWaterMarks | null = null;
  private readonly tokenDigests: Buffer[];
  private readonly sockets = new Set<WebSocket>();
  private readonly quiet = new RateLimitedLog(1000);
  private stopping = false;
  /** Batches received again and not queued a second time. */
  duplicates = 0;
  /** Per sender, the highest sequence queued (committed or on its way): at or above the durable mark. */
  private readonly dispatched = new Map<string, number>();

  constructor(
    private readonly config: Config,
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
    const log = this.ctx.logger.child({ peer });
    let sender: string | null = null;
    let dispatchChain: Promise<void> = Promise.resolve();
    let ackChain: Promise<void> = Promise.resolve();
    let inflight = 0;
    let paused = false;
    let closed = false;
    const decoder = new RecordDecoder(this.ctx.counters.as(this.name));
    const raw = (ws as unknown as { _socket: Duplex })._socket;

    const fail = (code: number, error: ErrorCode, message: string, retryable: boolean) => {
      if (closed) return;
      closed = true;
      if (!retryable) this.stats.connectionErrors++;
      this.quiet.log(`close:${error}`, (extra) =>
        log.warn({ sender, code, reason: message, ...extra }, 'closing an agent connection'),
      );
      try {
        ws.send(JSON.stringify({ type: 'error', code: error, retryable, message }));
      } catch {
        // the socket may be gone already
      }
      ws.close(code, message.slice(0, 120));
      setTimeout(() => ws.terminate(), 2000).unref();
    };

    const helloTimer = setTimeout(
      () => fail(CLOSE.handshakeTimeout, 'protocol', 'no hello within handshake_timeout', false),
      this.config.handshake_timeout,
    );
    let idleTimer: NodeJS.Timeout | null = null;
    const touch = () => {
      if (this.config.idle_timeout <= 0) return;
      if (idleTimer) clearTimeout(idleTimer);
      idleTimer = setTimeout(() => fail(CLOSE.normal, 'protocol', 'idle_timeout', true), this.config.idle_timeout);
      idleTimer.unref();
    };
    touch();
    ws.on('ping', touch);

    ws.on('message', (data: Buffer, isBinary: boolean) => {
      if (closed) return;
      touch();
      if (!isBinary) {
        let c: ReturnType<typeof parseControl>;
        try {
          c = parseControl(data.toString('utf8'));
        } catch (err) {
          return fail(CLOSE.badFrame, 'bad_frame', (err as Error).message, false);
        }
        if (c.type !== 'hello')
          return fail(CLOSE.protocol, 'protocol', `an agent does not send ${c.type} frames`, false);
        if (sender !== null) return fail(CLOSE.protocol, 'protocol', 'a second hello', false);
        if (!c.versions.includes(PROTOCOL_VERSION))
          return fail(
            CLOSE.protocol,
            'version',
            `no common version: offered ${c.versions.join(',')}, server speaks ${PROTOCOL_VERSION}`,
            false,
          );
        clearTimeout(helloTimer);
        sender = c.sender;
        const welcome: Welcome = {
          type: 'welcome',
          version: PROTOCOL_VERSION,
          resume: this.marks!.get(sender),
          compression: c.compression.includes('deflate') ? 'deflate' : 'none',
          window: WINDOW,
          maxFrameBytes: this.config.max_frame_size,
        };
        ws.send(JSON.stringify(welcome));
        log.info({ sender, resume: welcome.resume }, 'agent connected');
        return;
      }
      if (sender === null) return fail(CLOSE.protocol, 'protocol', 'a batch before hello', false);
      let batch: ReturnType<typeof decodeBatch>;
      try {
        batch = decodeBatch(data, this.config.max_frame_size);
      } catch (err) {
        return fail(
          err instanceof WireError && /exceeds the limit/.test(err.message) ? CLOSE.tooLarge : CLOSE.badFrame,
          'bad_frame',
          (err as Error).message,
          false,
        );
      }
      inflight += data.length;
      if (inflight > this.config.max_inflight_bytes && !paused) {
        paused = true;
        raw.pause();
      }
      const from = sender;
      const lastSeq = batch.firstSeq + batch.payloads.length - 1;
      // Batches are queued one after another (order, flow control), but their fsyncs overlap:
      // a batch's ack waits only for its own commit and the acks before it.
      const queued = dispatchChain.then(() =>
        closed ? null : this.dispatchBatch(from, batch.firstSeq, batch.payloads, decoder),
      );
      dispatchChain = queued.then(
        () => undefined,
        () => undefined,
      );
      // Durable in every queue, then the mark raised durably; several batches' marks share one write.
      // (Queues commit in order, so a later batch committed means the earlier ones are too.)
      const durable = queued.then(async (q) => {
        if (q) await q.committed;
        if (!closed) await this.marks!.commit(from, lastSeq);
      });
      durable.catch(() => undefined);
      ackChain = ackChain.then(async () => {
        try {
          await durable;
          if (!closed) ws.send(JSON.stringify({ type: 'ack', seq: lastSeq }));
        } catch (err) {
          // Not committed: forget what was queued after the durable mark, so the resend is taken.
          this.dispatched.set(from, this.marks!.get(from));
          if (err instanceof WireError) return fail(CLOSE.badFrame, 'bad_frame', err.message, false);
          fail(CLOSE.retryLater, 'retry_later', `not committed: ${(err as Error).message}`, true);
        } finally {
          inflight -= data.length;
          if (paused && inflight <= this.config.max_inflight_bytes / 2) {
            paused = false;
            raw.resume();
          }
        }
      });
    });
    ws.on('error', (err) => {
      this.quiet.log('ws-error', (extra) => log.warn({ sender, err: err.message, ...extra }, 'agent connection error'));
      if (/max payload/i.test(err.message)) this.stats.connectionErrors++;
    });
    ws.on('close', () => {
      closed = true;
      clearTimeout(helloTimer);
      if (idleTimer) clearTimeout(idleTimer);
      this.sockets.delete(ws);
    });
  }

  /**
   * Queues the records of a batch that this sender's marks do not cover (the durable high-water
   * mark, or what an earlier batch already queued), after waiting for room. Returns the commit of
   * what it queued. Records at or below the mark were taken before (a resend after a lost ack) and
   * are skipped.
   */
  private async dispatchBatch(
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
