import { appendFileSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { kmsgToSyslog, parseKmsg } from '../../src/sources/kernel/kmsg.js';
import { memoryLogger, readLines, scratchDir, sleep, testAgent, waitFor } from '../helpers/agent.js';

// Lines as /dev/kmsg gives them (recorded on this kind of machine, and the kernel's ABI document's example).
const RECORDED = [
  '5,0,0,-;Linux version 6.18.44 (builder@sandboxing) #1 SMP PREEMPT_DYNAMIC @0',
  '6,339,5140900,-;NET: Registered PF_INET6 protocol family',
  '7,160,424069,-;pci_root PNP0A03:00: host bridge window [io  0x0000-0x0cf7] (ignored)',
  ' SUBSYSTEM=acpi',
  ' DEVICE=+acpi:PNP0A03:00',
  'not a record',
  '30,341,6000000,c;systemd[1]: "quoted" \\x7f ] text',
].join('\n');

describe('kernel log records', () => {
  it('parses priority, sequence, time, flags, message and the device dictionary; counts lines that are not records', () => {
    const { records, bad } = parseKmsg(RECORDED);
    expect(bad).toBe(1);
    expect(records.map((r) => [r.pri, r.seq, r.micros, r.flags])).toEqual([
      [5, 0, 0, '-'],
      [6, 339, 5140900, '-'],
      [7, 160, 424069, '-'],
      [30, 341, 6000000, 'c'],
    ]);
    expect(records[2]!.dict).toEqual([
      ['SUBSYSTEM', 'acpi'],
      ['DEVICE', '+acpi:PNP0A03:00'],
    ]);
    const boot = Date.UTC(2026, 10, 30, 0, 0, 0);
    expect(kmsgToSyslog(records[2]!, boot, 'h').toString()).toBe(
      '<7>1 2026-11-30T00:00:00.424Z h kernel - - [kmsg@32473 SUBSYSTEM="acpi" DEVICE="+acpi:PNP0A03:00"] ' +
        'pci_root PNP0A03:00: host bridge window [io  0x0000-0x0cf7] (ignored)',
    );
    expect(kmsgToSyslog(records[3]!, boot, 'h').toString()).toBe(
      '<30>1 2026-11-30T00:00:06.000Z h kernel - - - systemd[1]: "quoted" \\x7f ] text',
    );
  });
});

function yaml(dir: string, device: string, extra = ''): string {
  return `state_dir: ${dir}/state
admin: { enabled: false }
hostname: h
sources:
  kernel: { type: kernel, device: ${device}, poll_interval: 20ms, checkpoint_interval: 20ms${extra} }
destinations:
  out: { type: file, path: ${dir}/out.log, format: raw, exactly_once: true, queue: { mode: reliable, sync_interval: 5ms } }
pipelines:
  p: { from: [kernel], to: [out] }
`;
}

const rec = (seq: number) => `6,${seq},${seq * 1000},-;message ${seq}\n`;
const seqs = (file: string) => readLines(file).map((l) => Number(l.split(' ').pop()));

describe('kernel source', () => {
  it('counts and logs records the kernel overwrote, resumes after its checkpoint, and reads a new boot from the start', async () => {
    const dir = scratchDir('sluice-kernel-');
    const device = path.join(dir, 'kmsg'); // a file standing in for the device: the same records, read in bulk
    const out = path.join(dir, 'out.log');
    writeFileSync(device, [100, 101, 102, 103, 104, 110, 111].map(rec).join(''));
    const { logger, lines } = memoryLogger();
    let agent = await testAgent(yaml(dir, device), logger);
    await waitFor('seven records', () => readLines(out).length >= 7);
    expect(seqs(out)).toEqual([100, 101, 102, 103, 104, 110, 111]);
    expect(agent.stats().sources.kernel!.dropped.kernel_overwritten).toBe(5);
    expect(lines.find((l) => String(l.msg).startsWith('the kernel overwrote'))).toMatchObject({
      level: 40,
      records_lost: 5,
      after_seq: 104,
    });
    await sleep(100); // a checkpoint write
    await agent.stop();
    // While sluice was stopped: two more, one of them after records lost meanwhile.
    appendFileSync(device, [112, 115].map(rec).join(''));
    agent = await testAgent(yaml(dir, device));
    await waitFor('nine records', () => readLines(out).length >= 9);
    await sleep(200);
    expect(seqs(out)).toEqual([100, 101, 102, 103, 104, 110, 111, 112, 115]);
    expect(agent.stats().sources.kernel!.dropped.kernel_overwritten).toBe(2);
    await agent.stop();
    // A checkpoint of another boot: every record is new (sequence numbers start again at each boot).
    const cp = path.join(dir, 'state/checkpoints/kernel.kmsg.json');
    const saved = JSON.parse(readFileSync(cp, 'utf8')) as { seq: number; boot_id: string };
    expect(saved.seq).toBe(115);
    writeFileSync(cp, JSON.stringify({ ...saved, boot_id: 'another-boot' }));
    // (Here the boot id is really the same, so the exactly-once file skips them as written: what is
    // checked is that the source reads them.)
    writeFileSync(device, [0, 1].map(rec).join(''));
    agent = await testAgent(yaml(dir, device));
    await waitFor('two more read', () => agent.stats().sources.kernel!.received === 2);
    expect(agent.stats().sources.kernel!.dropped.kernel_overwritten ?? 0).toBe(0);
  });

  it('reads the real /dev/kmsg: new records from the end, then after its checkpoint across a restart', async () => {
    const dir = scratchDir('sluice-kmsg-');
    const out = path.join(dir, 'out.log');
    const mark = `sluice-test-${process.pid}-${Date.now()}`;
    let agent = await testAgent(yaml(dir, '/dev/kmsg', ', read_from: end'));
    writeFileSync('/dev/kmsg', `<4>${mark} one\n`);
    await waitFor('the first mark', () => readLines(out).some((l) => l.includes(`${mark} one`)));
    await sleep(100);
    await agent.stop();
    writeFileSync('/dev/kmsg', `<3>${mark} two\n`);
    agent = await testAgent(yaml(dir, '/dev/kmsg'));
    await waitFor('the second mark', () => readLines(out).some((l) => l.includes(`${mark} two`)));
    await sleep(200);
    const mine = readLines(out).filter((l) => l.includes(mark));
    // Written by root to /dev/kmsg: facility user (the kernel's own are facility 0), as given.
    expect(mine).toHaveLength(2);
    expect(mine[0]).toMatch(new RegExp(`^<12>1 \\S+ h kernel - - - ${mark} one$`));
    expect(mine[1]).toMatch(new RegExp(`^<11>1 \\S+ h kernel - - - ${mark} two$`));
    // Nothing from before the first start (read_from: end), nothing twice.
    expect(new Set(readLines(out)).size).toBe(readLines(out).length);
  });
});
