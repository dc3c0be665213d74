// npm run bench:parser: parseSyslog throughput on typical messages, in-process.
import { parseSyslog } from '../dist/index.js';

const samples = {
  'RFC 5424 with structured data': Buffer.from(
    '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 iut="3" ' +
      'eventSource="Application" eventID="1011"] An application event log entry...',
  ),
  'RFC 5424, no SD (loggen -P)': Buffer.from(
    '<38>1 2026-11-22T15:10:18+00:00 localhost prg00000 1234 - - \ufeffseq: 0000000000, thread: 0000, runid: ' +
      '1795360218, stamp: 2026-11-22T15:10:18 PADDPADDPADDPADDPADDPADDPADDPADDPADDPADD',
  ),
  'RFC 3164': Buffer.from(
    "<34>Oct 11 22:14:15 mymachine su[1234]: 'su root' failed for lonvick on /dev/pts/8 " +
      'PADDPADDPADDPADDPADDPADDPADDPADDPADDPADDPADD',
  ),
  'RFC 3164, RFC 3339 time (lenient, loggen)': Buffer.from(
    '<38>2026-11-22T15:10:17 localhost prg00000[1234]: seq: 0000000000, thread: 0000, runid: 1795360217, stamp: ' +
      '2026-11-22T15:10:17 PADDPADDPADD',
  ),
};
const lenient = { lenient: true };
const ref = { referenceDate: new Date(2026, 10, 22) };

console.log('| message | parses/s | ns/parse |');
console.log('|---|---:|---:|');
for (const [name, buf] of Object.entries(samples)) {
  const opts = name.includes('lenient') ? lenient : ref;
  for (let i = 0; i < 50_000; i++) parseSyslog(buf, opts); // warm up
  const n = 500_000;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < n; i++) parseSyslog(buf, opts);
  const ns = Number(process.hrtime.bigint() - t0) / n;
  console.log(`| ${name} | ${Math.round(1e9 / ns).toLocaleString('en')} | ${Math.round(ns)} |`);
}
