import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import type { JetStreamManager } from '@nats-io/jetstream';
import type { NatsConnection } from '@nats-io/transport-node';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { PEERS_DIR } from './peers.js';
import { onTestFinished } from 'vitest';
import { scratchDir, stablePort } from './agent.js';

/** nats-server 2.9.10, unpacked from Debian's package by scripts/install-peers.sh. */
export function natsServerBin(): string {
  const bin = path.join(PEERS_DIR, 'nats/usr/sbin/nats-server');
  if (!existsSync(bin))
    throw new Error(
      `nats-server is missing (${bin}): run "bash scripts/install-peers.sh" (npm test runs it) — this test needs it`,
    );
  return bin;
}

export interface NatsNode {
  name: string;
  port: number;
  url: string;
  proc: ChildProcess | null;
  /** Its log (stderr), for a failing test's message. */
  log: string[];
}

/**
 * One nats-server, or a cluster of `size` on loopback, with JetStream and file storage under
 * `dir`. Nodes keep their ports and store across kill and start, as a restarted server would.
 */
export class NatsCluster {
  readonly nodes: NatsNode[] = [];
  private clusterPorts: number[] = [];

  private constructor(
    private readonly dir: string,
    private readonly extraConf: string,
  ) {}

  static async start(dir: string, size = 1, extraConf = ''): Promise<NatsCluster> {
    const c = new NatsCluster(dir, extraConf);
    for (let i = 0; i < size; i++) {
      const port = await stablePort();
      c.nodes.push({ name: `n${i + 1}`, port, url: `nats://127.0.0.1:${port}`, proc: null, log: [] });
      if (size > 1) c.clusterPorts.push(await stablePort());
    }
    await Promise.all(c.nodes.map((_, i) => c.startNode(i)));
    if (size > 1) await c.waitForMeta();
    return c;
  }

  get urls(): string[] {
    return this.nodes.map((n) => n.url);
  }

  private conf(i: number): string {
    const n = this.nodes[i]!;
    const store = path.join(this.dir, n.name);
    mkdirSync(store, { recursive: true });
    const lines = [
      `server_name: ${n.name}`,
      'host: 127.0.0.1',
      `port: ${n.port}`,
      `jetstream { store_dir: "${store}", max_memory_store: 256MB, max_file_store: 2GB }`,
    ];
    if (this.clusterPorts.length > 0) {
      const routes = this.clusterPorts.map((p, k) => (k === i ? null : `nats://127.0.0.1:${p}`)).filter(Boolean);
      lines.push(
        `cluster { name: sluicetest, listen: "127.0.0.1:${this.clusterPorts[i]}", routes: [${routes.map((r) => `"${r}"`).join(', ')}] }`,
      );
    }
    lines.push(this.extraConf);
    const file = path.join(this.dir, `${n.name}.conf`);
    writeFileSync(file, `${lines.join('\n')}\n`);
    return file;
  }

  /** Starts node `i` (again); resolves once it accepts connections. */
  async startNode(i: number): Promise<void> {
    const n = this.nodes[i]!;
    const proc = spawn(natsServerBin(), ['-c', this.conf(i)], { stdio: ['ignore', 'ignore', 'pipe'] });
    n.proc = proc;
    proc.stderr!.on('data', (d: Buffer) => {
      n.log.push(d.toString());
      if (n.log.length > 200) n.log.splice(0, 100);
    });
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline) {
      if (proc.exitCode !== null) throw new Error(`nats-server ${n.name} exited: ${n.log.join('').slice(-2000)}`);
      if (await accepts(n.port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`nats-server ${n.name} did not listen in 15 s: ${n.log.join('').slice(-2000)}`);
  }

  /** SIGKILLs node `i`; resolves once it is gone. */
  async killNode(i: number): Promise<void> {
    const p = this.nodes[i]!.proc;
    // A process ended by a signal keeps exitCode null.
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    const gone = new Promise((r) => p.once('exit', r));
    p.kill('SIGKILL');
    await gone;
  }

  /** A clustered JetStream answers only once it has a meta leader: wait for one (15 s at most). */
  private async waitForMeta(): Promise<void> {
    const deadline = Date.now() + 15_000;
    let last: unknown;
    while (Date.now() < deadline) {
      try {
        await withJetStream(this.urls, (jsm) => jsm.getAccountInfo(), 2000);
        return;
      } catch (err) {
        last = err;
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`the NATS cluster elected no JetStream leader in 15 s: ${String(last)}`);
  }

  async stop(): Promise<void> {
    await Promise.all(this.nodes.map((_, i) => this.killNode(i)));
  }
}

/**
 * Runs `f` with a JetStream manager on a connection of its own to `urls`, closed afterwards (for
 * a test to set up a stream or look at one); `timeout` for each API request.
 */
export async function withJetStream<T>(
  urls: string[],
  f: (jsm: JetStreamManager, nc: NatsConnection) => Promise<T>,
  timeout = 5000,
): Promise<T> {
  const { connect } = await import('@nats-io/transport-node');
  const { jetstreamManager } = await import('@nats-io/jetstream');
  const nc = await connect({ servers: urls, reconnect: false });
  try {
    return await f(await jetstreamManager(nc, { timeout }), nc);
  } finally {
    await nc.close();
  }
}

function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/**
 * A TCP proxy in front of a NATS server whose connections can be cut in one direction: what is
 * sent that way is then lost (a client's acks, as when it dies right after sending them; a
 * server's PubAcks, as when a connection breaks after the publish arrived). Connections made after
 * the cut pass both ways.
 */
export class NatsProxy {
  private readonly open = new Set<{ toServer: boolean; toClient: boolean; sockets: net.Socket[] }>();

  private constructor(private readonly server: net.Server) {}

  static async start(port: number): Promise<NatsProxy> {
    const server = net.createServer();
    const proxy = new NatsProxy(server);
    server.on('connection', (client) => {
      const upstream = net.connect(port, '127.0.0.1');
      const conn = { toServer: true, toClient: true, sockets: [client, upstream] };
      proxy.open.add(conn);
      upstream.on('data', (d) => conn.toClient && client.write(d));
      client.on('data', (d) => conn.toServer && upstream.write(d));
      for (const s of conn.sockets) {
        s.on('error', () => undefined);
        s.on('close', () => {
          client.destroy();
          upstream.destroy();
          proxy.open.delete(conn);
        });
      }
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    return proxy;
  }

  get url(): string {
    return `nats://127.0.0.1:${(this.server.address() as net.AddressInfo).port}`;
  }

  /** From now on, what the open connections send that way is lost. */
  cut(direction: 'to-server' | 'to-client'): void {
    for (const c of this.open) {
      if (direction === 'to-server') c.toServer = false;
      else c.toClient = false;
    }
  }

  close(): void {
    for (const c of this.open) for (const s of c.sockets) s.destroy();
    this.server.close();
  }
}

/** A NATS server (or a cluster of `size`) for this test, stopped when it finishes. */
export async function testNatsCluster(size = 1, conf = ''): Promise<NatsCluster> {
  const c = await NatsCluster.start(scratchDir('sluice-nats-'), size, conf);
  onTestFinished(() => c.stop());
  return c;
}

/**
 * An agent: syslog over TCP (port 0) into a nats destination (reliable queue, subject
 * `logs.${HOST}.${PROGRAM}`); `dest`: more keys of the destination (default: it makes the stream
 * LOGS); `also`: a second destination named `copy`, fed by the same pipeline.
 */
export function natsAgentYaml(o: { dir: string; urls: string[]; dest?: string; also?: string }): string {
  return `state_dir: ${o.dir}/state
admin: { enabled: false }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:0" }
destinations:
  js:
    type: nats
    servers: [${o.urls.map((u) => `"${u}"`).join(', ')}]
    subject: "logs.\${HOST}.\${PROGRAM}"
    backoff: { initial: 50ms, max: 500ms }
    queue: { mode: reliable }
${o.dest ?? '    create_stream: { name: LOGS }'}
${o.also ?? ''}
pipelines:
  p: { from: [in], to: [js${o.also ? ', copy' : ''}] }
`;
}

/**
 * Decentralised (JWT) authentication, as `nsc` would set it up: an operator, a system account, an
 * account `logs` with JetStream, and a user of it. Returns the server's configuration and the
 * user's `.creds` file text. The JWTs are signed here with the operator's and account's NKeys.
 */
export async function jwtAccounts(): Promise<{ conf: string; creds: string }> {
  const { nkeys } = await import('@nats-io/transport-node');
  type KeyPair = ReturnType<typeof nkeys.createOperator>;
  const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const jwt = (issuer: KeyPair, subject: KeyPair, name: string, nats: Record<string, unknown>) => {
    const head = `${b64({ typ: 'JWT', alg: 'ed25519-nkey' })}.${b64({
      jti: randomBytes(16).toString('hex').toUpperCase(),
      iat: Math.floor(Date.now() / 1000),
      iss: issuer.getPublicKey(),
      sub: subject.getPublicKey(),
      name,
      nats: { ...nats, version: 2 },
    })}`;
    return `${head}.${Buffer.from(issuer.sign(new TextEncoder().encode(head))).toString('base64url')}`;
  };
  const unlimited = { subs: -1, data: -1, payload: -1, imports: -1, exports: -1, wildcards: true, conn: -1, leaf: -1 };
  const operator = nkeys.createOperator();
  const system = nkeys.createAccount();
  const account = nkeys.createAccount();
  const user = nkeys.createUser();
  const accounts = {
    [system.getPublicKey()]: jwt(operator, system, 'SYS', { type: 'account', limits: unlimited }),
    [account.getPublicKey()]: jwt(operator, account, 'logs', {
      type: 'account',
      limits: { ...unlimited, mem_storage: -1, disk_storage: -1, streams: -1, consumer: -1 },
    }),
  };
  const conf =
    `operator: "${jwt(operator, operator, 'op', { type: 'operator' })}"\n` +
    `system_account: ${system.getPublicKey()}\nresolver: MEMORY\n` +
    `resolver_preload: { ${Object.entries(accounts)
      .map(([k, v]) => `${k}: "${v}"`)
      .join(', ')} }`;
  const userJwt = jwt(account, user, 'agent', { type: 'user', pub: {}, sub: {}, subs: -1, data: -1, payload: -1 });
  const creds =
    `-----BEGIN NATS USER JWT-----\n${userJwt}\n------END NATS USER JWT------\n\n` +
    `-----BEGIN USER NKEY SEED-----\n${new TextDecoder().decode(user.getSeed())}\n------END USER NKEY SEED------\n`;
  return { conf, creds };
}
