import { readFile } from 'node:fs/promises';
import { isIPv6 } from 'node:net';

/**
 * The kernel's count of datagrams a UDP socket dropped because its receive buffer was full (the
 * `drops` column of /proc/net/udp and /proc/net/udp6, per socket). Node.js gives no access to the
 * socket itself, so the socket is found by its bound address and port. Linux only: null elsewhere,
 * or when no such socket is listed.
 */
export async function kernelUdpDrops(address: string, port: number): Promise<number | null> {
  const v6 = isIPv6(address);
  let table: string;
  try {
    table = await readFile(v6 ? '/proc/net/udp6' : '/proc/net/udp', 'latin1');
  } catch {
    return null;
  }
  const local = `${procAddress(address)}:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  let drops: number | null = null;
  for (const line of table.split('\n')) {
    const cols = line.trim().split(/\s+/);
    if (cols[1] !== local || cols.length < 13) continue;
    drops = (drops ?? 0) + Number(cols[12]);
  }
  return drops;
}

/** An address as /proc/net/udp prints it: each 32-bit word in host (little-endian) order, in hex. */
export function procAddress(address: string): string {
  const bytes = isIPv6(address) ? ipv6Bytes(address) : address.split('.').map(Number);
  let out = '';
  for (let w = 0; w < bytes.length; w += 4) {
    for (let i = 3; i >= 0; i--) out += bytes[w + i]!.toString(16).toUpperCase().padStart(2, '0');
  }
  return out;
}

function ipv6Bytes(address: string): number[] {
  const [head = '', tail] = address.split('::');
  const words = (s: string) => (s ? s.split(':') : []);
  let parts = words(head);
  if (tail !== undefined) {
    const rest = words(tail);
    parts = [...parts, ...Array(8 - parts.length - rest.length).fill('0'), ...rest];
  }
  return parts.flatMap((p) => {
    const v = parseInt(p, 16);
    return [v >> 8, v & 0xff];
  });
}
