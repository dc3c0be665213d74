import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { RelpWindow } from '../../src/destinations/relp/window.js';
import { relpFrame, RelpParser } from '../../src/protocol/relp.js';

describe('RelpWindow', () => {
  it('takes the open answer, numbers commands from 2, and frees only a prefix answered 200, in order', () => {
    const w = new RelpWindow();
    expect(w.answer(1, 200, 'OK')).toBe('ok');
    expect(w.openAnswer).toEqual({ code: 200, text: 'OK' });
    expect(w.sent(3, 0)).toBe(2);
    expect(w.sent(2, 0)).toBe(5);
    expect(w.unanswered).toBe(5);
    expect(w.answer(3, 200, 'OK')).toBe('ok');
    expect(w.takeAnswered()).toBe(0); // 2 is still open: 3 waits behind it
    expect(w.answer(2, 200, 'OK')).toBe('ok');
    expect(w.takeAnswered()).toBe(2);
    expect(w.unanswered).toBe(3);
    expect(w.nextTxnr).toBe(7);
  });

  it('breaks on an answer to a transaction not open, or answered twice', () => {
    const w = new RelpWindow();
    w.sent(2, 0);
    expect(w.answer(9, 200, 'OK')).toBe('broken');
    expect(w.broken?.message).toMatch(/transaction 9, which is not open/);
    const v = new RelpWindow();
    v.sent(1, 0);
    expect(v.answer(2, 200, 'OK')).toBe('ok');
    expect(v.answer(2, 200, 'OK')).toBe('broken');
  });

  it('reports a refusal once, after the prefix before it can be freed, and blames the receiver', () => {
    const w = new RelpWindow();
    w.sent(3, 0);
    w.answer(2, 200, 'OK');
    expect(w.answer(3, 500, 'not now')).toBe('refused');
    expect(w.takeAnswered()).toBe(1);
    expect(w.takeRefusal()?.message).toBe('server answered 500 not now');
    expect(w.takeRefusal()).toBeNull();
    expect(w.refusals).toBe(1);
    expect(w.endedByReceiver).toBe(true);
    expect(w.unanswered).toBe(2);
  });

  it('takes the close answer, and breaks on serverclose or an unexpected command', () => {
    const w = new RelpWindow();
    w.sent(1, 0);
    w.answer(2, 200, 'OK');
    w.takeAnswered();
    const close = w.close();
    expect(close).toBe(3);
    expect(w.onFrame({ txnr: close, command: 'rsp', data: Buffer.from('200 OK') })).toBe(false);
    expect(w.closeAnswered).toBe(true);
    const s = new RelpWindow();
    expect(s.onFrame({ txnr: 0, command: 'serverclose', data: Buffer.alloc(0) })).toBe(true);
    expect(s.endedByReceiver).toBe(true);
    const u = new RelpWindow();
    expect(u.onFrame({ txnr: 2, command: 'syslog', data: Buffer.from('x') })).toBe(true);
    expect(u.broken?.message).toMatch(/unexpected syslog/);
  });

  it('says when the oldest unanswered command is overdue, and when the numbering nears its wrap', () => {
    const w = new RelpWindow(100);
    w.sent(1, 1000);
    w.sent(1, 2000);
    expect(w.overdue(1500, 1000)).toBe(-1);
    expect(w.overdue(2001, 1000)).toBe(2);
    w.answer(2, 200, 'OK');
    w.takeAnswered();
    expect(w.overdue(2001, 1000)).toBe(-1);
    expect(w.nearWrap(50)).toBe(false);
    expect(w.nearWrap(94)).toBe(true);
  });

  it('frees exactly the records a model does, for answers in any order, through the parser, over many windows', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.integer({ min: 1, max: 40 }), fc.nat(), fc.boolean()), { minLength: 1, maxLength: 60 }),
        (steps) => {
          const w = new RelpWindow();
          const parser = new RelpParser(1 << 10);
          const open: number[] = [];
          const answered = new Set<number>();
          let next = 2;
          let freedModel = 0;
          let freed = 0;
          for (const [n, pick, ok] of steps) {
            expect(w.sent(n, 0)).toBe(next);
            for (let i = 0; i < n; i++) open.push(next++);
            // Answer one open transaction, picked anywhere in the window.
            const t = open.splice(pick % open.length, 1)[0]!;
            const bytes = relpFrame(t, 'rsp', ok ? '200 OK' : '503 busy');
            parser.pushAnswers(bytes, w.onOk, w.onFrame);
            if (!ok) {
              expect(w.takeRefusal()?.message).toBe('server answered 503 busy');
              return; // a session ends at a refusal
            }
            answered.add(t);
            // The model: the prefix of sent transactions that are all answered.
            while (answered.has(2 + freedModel)) freedModel++;
            freed += w.takeAnswered();
            expect(freed).toBe(freedModel);
            expect(w.unanswered).toBe(next - 2 - freedModel);
          }
          expect(w.broken).toBeNull();
        },
      ),
      { numRuns: 200 },
    );
  });
});
