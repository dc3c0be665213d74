// npm run bench: TCP in -> memory queue -> TCP out to a counting sink, 200-byte messages from
// syslog-ng's loggen; the same load through syslog-ng 3.38 and straight into the sink, side by side.
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { freePort, loggenRun, peers, requirePeers, sngEnv, startProcess, startSink, startSluice, stop, tmp, waitPort } from './harness.mjs';

const N = Number(process.env.BENCH_MESSAGES ?? 2_000_000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);

async function sluiceRun(sink, queue = '{ mode: memory }') {
  const dir = tmp();
  const port = await freePort();
  const child = startSluice(dir, 'sluice', `
state_dir: ${dir}/state
log: { level: warn, format: json }
sources:
  in: { type: syslog_tcp, address: "127.0.0.1:${port}" }
destinations:
  sink:
    type: syslog
    address: 127.0.0.1:${sink.port}
    framing: lf
    queue: ${queue}
pipelines:
  p: { from: [in], to: [sink] }
`);
  await waitPort(port);
  return { port, stop: () => stop(child) };
}

async function syslogNgRun(sink, diskBuffer) {
  const dir = tmp();
  const port = await freePort();
  const cfg = path.join(dir, 'syslog-ng.conf');
  const buffer = diskBuffer ? `disk-buffer(reliable(${diskBuffer === 'reliable' ? 'yes' : 'no'}) dir("${dir}") disk-buf-size(1073741824))` : '';
  writeFileSync(cfg, `@version: 3.38
options { keep-hostname(yes); log-fifo-size(100000); stats-freq(0); };
source s_in { network(transport("tcp") ip("127.0.0.1") port(${port}) max-connections(10) log-iw-size(100000)); };
destination d_sink { network("127.0.0.1" transport("tcp") port(${sink.port}) ${buffer}); };
log { source(s_in); destination(d_sink); flags(flow-control); };
`);
  const sng = path.join(peers, 'syslog-ng');
  const child = startProcess(path.join(sng, 'usr/sbin/syslog-ng'), [
    '-F', '-f', cfg, '-R', path.join(dir, 'persist'), '-p', path.join(dir, 'pid'), '-c', path.join(dir, 'ctl'), '--no-caps',
    `--module-path=${path.join(sng, 'usr/lib/syslog-ng/3.38')}`,
  ], sngEnv());
  await waitPort(port);
  return { port, stop: () => stop(child) };
}

async function measure(name, start) {
  const sink = await startSink();
  const rates = [];
  try {
    for (let i = 0; i < ROUNDS; i++) {
      const target = await start(sink);
      try {
        const r = await loggenRun(target.port, sink, N);
        if (r.delivered < r.sent) console.error(`${name}: only ${r.delivered} of ${r.sent} arrived`);
        rates.push(r.rate);
      } finally {
        await target.stop();
      }
    }
  } finally {
    await stop(sink.child);
  }
  rates.sort((a, b) => a - b);
  return { name, median: rates[Math.floor(rates.length / 2)], rates };
}

requirePeers();
console.log(`pipeline benchmark: ${N} messages of 200 bytes per round, ${ROUNDS} rounds, loggen -> X -> line-counting sink (TCP)`);
const results = [];
results.push(await measure('loggen -> sink (no relay)', async (sink) => ({ port: sink.port, stop: async () => {} })));
results.push(await measure('sluice (memory queue)', sluiceRun));
results.push(await measure('syslog-ng 3.38 (no disk-buffer)', (s) => syslogNgRun(s, null)));
results.push(await measure('syslog-ng 3.38 (disk-buffer reliable(no))', (s) => syslogNgRun(s, 'normal')));
results.push(await measure('sluice (reliable queue, fsync every 50ms)', (s) => sluiceRun(s, '{ mode: reliable, max_size: 1GiB, sync: interval, sync_interval: 50ms }')));
results.push(await measure('syslog-ng 3.38 (disk-buffer reliable(yes), no fsync)', (s) => syslogNgRun(s, 'reliable')));
const sluice = results[1].median;
console.log('');
console.log('| pipeline | median msg/s | rounds | sluice (memory) ÷ this |');
console.log('|---|---:|---|---:|');
for (const r of results) {
  console.log(`| ${r.name} | ${Math.round(r.median).toLocaleString('en')} | ${r.rates.map((x) => Math.round(x / 1000) + 'k').join(', ')} | ${(sluice / r.median).toFixed(2)} |`);
}
console.log(`\nsluice, memory queue: ${Math.round(sluice).toLocaleString('en')} msg/s (target >= 300,000)`);
console.log(`sluice, reliable queue: ${Math.round(results[4].median).toLocaleString('en')} msg/s = ${(results[4].median / results[5].median).toFixed(2)}x syslog-ng reliable(yes) (target >= 2x)`);
