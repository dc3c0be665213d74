import http from 'node:http';
import { isIP, type AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.js';
import { STATUS_PAGE } from './status-page.js';

export interface AdminHandlers {
  /** The Prometheus registry, built on first use. */
  metrics(): Promise<Registry>;
  /** The body of /api/v1/stats. */
  stats(): unknown;
  /** Null when ready, else the reasons it is not. */
  notReady(): string[] | null;
}

/** The host name of a Host header (lower case, without port or IPv6 brackets), or null when malformed. */
export function hostName(header: string): string | null {
  const h = header.trim().toLowerCase();
  if (h.startsWith('[')) {
    const end = h.indexOf(']');
    if (end < 0) return null;
    const rest = h.slice(end + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return null;
    return h.slice(1, end);
  }
  const m = /^([^:]+)(?::\d{1,5})?$/.exec(h);
  return m ? m[1]!.replace(/\.$/, '') : null;
}

/**
 * Whether a request's Host header may be answered. A page in a browser on this host can reach the
 * listener through DNS rebinding (a name of the attacker's that resolves to 127.0.0.1), and would
 * send that name as Host. So only names that cannot be rebound are answered: IP literals,
 * `localhost` and `*.localhost` (browsers resolve those to loopback themselves), and the names in
 * `allowed`. A request without Host (HTTP/1.0 tools) is not a browser's and is answered.
 */
export function hostAllowed(header: string | undefined, allowed: ReadonlySet<string>): boolean {
  if (header === undefined) return true;
  const name = hostName(header);
  if (name === null || name === '') return false;
  return isIP(name) !== 0 || name === 'localhost' || name.endsWith('.localhost') || allowed.has(name);
}

/**
 * The admin HTTP listener: /metrics, /healthz, /readyz, /api/v1/stats and the status page at /.
 * Read-only, GET and HEAD only.
 */
export class AdminServer {
  private server: http.Server | null = null;
  private readonly allowedHosts: ReadonlySet<string>;
  private refused = 0;

  constructor(
    private readonly handlers: AdminHandlers,
    private readonly logger: Logger,
    allowedHosts: readonly string[] = [],
  ) {
    this.allowedHosts = new Set(allowedHosts.map((h) => h.toLowerCase().replace(/\.$/, '')));
  }

  /** Listens; on failure logs and resolves false (sluice runs on without it). */
  async start(host: string, port: number): Promise<boolean> {
    // Node checks the header and request timeouts only every connectionsCheckingInterval (30 s by
    // default): a client that never finishes its headers would hold a connection 30 s, not 10.
    const server = http.createServer({ connectionsCheckingInterval: 1000 }, (req, res) => void this.handle(req, res));
    server.keepAliveTimeout = 5000;
    server.headersTimeout = 10_000;
    server.requestTimeout = 10_000;
    const ok = await new Promise<boolean>((resolve) => {
      server.once('error', (err) => {
        this.logger.error(
          { address: `${host}:${port}`, err: err.message },
          'admin listener cannot start; metrics, health and the status page are unavailable, logs still flow',
        );
        resolve(false);
      });
      server.listen(port, host, () => resolve(true));
    });
    if (!ok) return false;
    server.on('error', (err) => this.logger.error({ err: err.message }, 'admin listener error'));
    this.server = server;
    this.logger.info(
      { admin: `http://${this.address()}` },
      'admin listener ready: /metrics /healthz /readyz /api/v1/stats /',
    );
    return true;
  }

  /** host:port it listens on, or null. */
  address(): string | null {
    const a = this.server?.address() as AddressInfo | null | undefined;
    if (!a) return null;
    return a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const send = (code: number, type: string, body: string) => {
      res.writeHead(code, { 'content-type': type, 'cache-control': 'no-store', 'x-content-type-options': 'nosniff' });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    if (!hostAllowed(req.headers.host, this.allowedHosts)) {
      // Logged once, then every 1000th: a page that keeps trying must not flood the log.
      if (this.refused++ % 1000 === 0) {
        this.logger.warn(
          { host: req.headers.host, refused: this.refused },
          'admin request refused: its Host is not loopback, an IP address or in admin.allowed_hosts (DNS rebinding)',
        );
      }
      send(421, 'text/plain; charset=utf-8', 'unknown host: add it to admin.allowed_hosts\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      send(405, 'text/plain; charset=utf-8', 'method not allowed\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    try {
      switch (path) {
        case '/metrics': {
          const registry = await this.handlers.metrics();
          send(200, registry.contentType, await registry.metrics());
          return;
        }
        case '/healthz':
          send(200, 'text/plain; charset=utf-8', 'ok\n');
          return;
        case '/readyz': {
          const reasons = this.handlers.notReady();
          send(
            reasons ? 503 : 200,
            'application/json',
            `${JSON.stringify({ ready: !reasons, reasons: reasons ?? [] })}\n`,
          );
          return;
        }
        case '/api/v1/stats':
          send(200, 'application/json', `${JSON.stringify(this.handlers.stats())}\n`);
          return;
        case '/':
          send(200, 'text/html; charset=utf-8', STATUS_PAGE);
          return;
        default:
          send(404, 'text/plain; charset=utf-8', 'not found\n');
      }
    } catch (err) {
      this.logger.error({ path, err: (err as Error).message }, 'admin request failed');
      send(500, 'text/plain; charset=utf-8', 'internal error\n');
    }
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = null;
    if (!s) return;
    s.closeAllConnections();
    await new Promise<void>((r) => s.close(() => r()));
  }
}
