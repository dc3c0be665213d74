// A line-counting TCP sink: counts LF-terminated lines from any number of connections and
// reports the running total on stdout every 50 ms. Runs as its own process.
// On stdin, "stall EVERY_MS FOR_MS" makes it stop reading every EVERY_MS for FOR_MS (a destination
// that keeps up on average but stalls now and then, as a network or a disk does); "steady" ends that.
import net from 'node:net';

let lines = 0;
const sockets = new Set();
const server = net.createServer((s) => {
  sockets.add(s);
  s.on('data', (buf) => {
    for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) lines++;
  });
  s.on('error', () => {});
  s.on('close', () => sockets.delete(s));
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`port ${server.address().port}\n`);
  setInterval(() => process.stdout.write(`count ${lines}\n`), 50);
});

let stallTimer = null;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (cmd) => {
  const [what, every, ms] = cmd.trim().split(' ');
  if (stallTimer) clearInterval(stallTimer);
  stallTimer = null;
  if (what !== 'stall') return;
  stallTimer = setInterval(() => {
    for (const s of sockets) s.pause();
    setTimeout(() => {
      for (const s of sockets) s.resume();
    }, Number(ms));
  }, Number(every));
});
process.on('SIGTERM', () => process.exit(0));
