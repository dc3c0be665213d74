import net from 'node:net';

/** Sends `lines` (each ended by LF) over one TCP connection to 127.0.0.1:`port`, then closes it. */
export async function sendTcp(port: number, lines: string[]): Promise<void> {
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((r) => s.once('connect', () => r()));
  await new Promise<void>((r) => s.end(lines.map((l) => `${l}\n`).join(''), () => r()));
}

/** A loopback port nothing listens on (it was free a moment ago): connections to it are refused. */
export async function deadPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}
