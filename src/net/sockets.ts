import { readFileSync } from 'node:fs';
import net from 'node:net';
import type tls from 'node:tls';
import type { z } from 'zod';
import type { tlsClientSchema, tlsServerSchema } from '../config/types.js';

/** Node's options for a listener's `tls` section: its certificate, and with `client_ca`, mutual TLS. */
export function tlsServerOptions(t: z.output<typeof tlsServerSchema>): tls.TlsOptions {
  return {
    cert: readFileSync(t.cert),
    key: readFileSync(t.key),
    ca: t.client_ca ? readFileSync(t.client_ca) : undefined,
    requestCert: t.client_ca !== undefined,
    rejectUnauthorized: t.client_ca !== undefined,
    minVersion: t.min_version,
  };
}

/** The part of Node's (and ws's) client options that a `tls` section sets. */
export interface TlsClientOptions {
  ca: Buffer | undefined;
  cert: Buffer | undefined;
  key: Buffer | undefined;
  servername: string | undefined;
  rejectUnauthorized: boolean;
}

/**
 * Node's options for a destination's `tls` section. The name checked against the server's
 * certificate (SNI) is `server_name`, or else `host` unless that is an IP address.
 */
export function tlsClientOptions(t: z.output<typeof tlsClientSchema>, host: string | undefined): TlsClientOptions {
  return {
    ca: t.ca ? readFileSync(t.ca) : undefined,
    cert: t.cert ? readFileSync(t.cert) : undefined,
    key: t.key ? readFileSync(t.key) : undefined,
    servername: t.server_name ?? (host === undefined || net.isIP(host) ? undefined : host),
    rejectUnauthorized: t.verify,
  };
}

/** Listens on `address`; rejects if that fails (a port in use, say). */
export function listen(server: net.Server, address: { host: string; port: number }): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: address.host, port: address.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/**
 * A TCP connection, or TLS with `tlsOptions`, ready to write (handshake done), with no delay and
 * keepalive set; rejects on an error or after `timeoutMs`.
 */
export async function connectStream(
  address: { host: string; port: number },
  tlsOptions: tls.ConnectionOptions | null,
  timeoutMs: number,
): Promise<net.Socket> {
  const { host, port } = address;
  // node:tls is imported when first used: an agent without TLS does not carry it.
  const socket = tlsOptions
    ? (await import('node:tls')).connect({ host, port, ...tlsOptions })
    : net.connect({ host, port });
  return new Promise<net.Socket>((resolve, reject) => {
    const timer = setTimeout(() => socket.destroy(new Error(`connect timeout after ${timeoutMs} ms`)), timeoutMs);
    // Stays attached: until the caller has its own handler, a late error is not an uncaught one.
    socket.once('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`cannot connect to ${host}:${port}: ${err.message}`));
    });
    socket.once(tlsOptions ? 'secureConnect' : 'connect', () => {
      clearTimeout(timer);
      socket.setNoDelay(true);
      socket.setKeepAlive(true, 60_000);
      resolve(socket);
    });
  });
}

/**
 * Stops a stream listener (TCP, TLS, Unix): no new connections; the open ones are asked to end, so
 * senders finish what is in their socket buffers, and are cut after a second; then batches still
 * waiting for room in a queue get a second more.
 */
export async function closeStreamServer(
  server: net.Server,
  connections: Set<net.Socket>,
  inFlight: Set<Promise<void>>,
): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  for (const s of connections) s.end();
  await Promise.race([closed, new Promise<void>((resolve) => setTimeout(resolve, 1000).unref())]);
  for (const s of connections) s.destroy();
  await Promise.race([Promise.all(inFlight), new Promise<void>((r) => setTimeout(r, 1000).unref())]);
}
