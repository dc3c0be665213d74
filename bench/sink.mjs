// A line-counting TCP sink: counts LF-terminated lines from any number of connections and
// reports the running total on stdout every 50 ms. Runs as its own process.
import net from 'node:net';

let lines = 0;
const server = net.createServer((s) => {
  s.on('data', (buf) => {
    for (let i = buf.indexOf(10); i !== -1; i = buf.indexOf(10, i + 1)) lines++;
  });
  s.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`port ${server.address().port}\n`);
  setInterval(() => process.stdout.write(`count ${lines}\n`), 50);
});
process.on('SIGTERM', () => process.exit(0));
