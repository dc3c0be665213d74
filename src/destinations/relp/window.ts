import { parseRsp, type RelpFrame } from '../../protocol/relp.js';

/** What an answer did to the session. */
export type AnswerResult = 'ok' | 'refused' | 'broken';

/**
 * The client side of one RELP session's transactions: the `open` (transaction 1), the `syslog`
 * commands sent and not yet answered, oldest first, and the `close`. Answers may come in any order;
 * records are freed only as a prefix of `200 OK` answers, in the order they were sent.
 *
 * Kept as plain number arrays (no object per message): entry i is transaction `base + i`, its code
 * 0 while unanswered. Nothing here does I/O, so it is tested alone.
 */
export class RelpWindow {
  private codes: number[] = [];
  private sentAt: number[] = [];
  /** The transaction number of entry 0 (1 is the `open`). */
  private base = 2;
  /** codes[head] is the oldest unanswered. */
  private head = 0;
  /** The next transaction number to use. */
  private txnr = 2;
  /** The answer to `open`, once it came. */
  openAnswer: { code: number; text: string } | null = null;
  private closeTxnr = -1;
  /** True once the `close` was answered. */
  closeAnswered = false;
  /** Why the session cannot go on (an answer to no open transaction, an unexpected command). */
  broken: Error | null = null;
  /** The first refusal (an answer other than 200) since the last `takeRefusal`. */
  private refusal: Error | null = null;
  /** Answers other than 200, all told. */
  refusals = 0;
  /** True when the receiver ended the session itself (serverclose) or refused a record. */
  endedByReceiver = false;

  /** Transaction numbers a session may use before it must end and start over (RELP's wrap). */
  constructor(private readonly maxTxnr = 999_999_999) {}

  /** Commands sent and not answered. */
  get unanswered(): number {
    return this.codes.length - this.head;
  }

  /** The number the next command takes. */
  get nextTxnr(): number {
    return this.txnr;
  }

  /** True when `n` more commands would come too close to the largest transaction number. */
  nearWrap(n: number): boolean {
    return this.txnr + n + 2 >= this.maxTxnr;
  }

  /** Records `n` syslog commands sent at `now`; returns the first one's transaction number. */
  sent(n: number, now: number): number {
    const first = this.txnr;
    for (let i = 0; i < n; i++) {
      this.codes.push(0);
      this.sentAt.push(now);
    }
    this.txnr += n;
    return first;
  }

  /** Takes the number of the `close`. */
  close(): number {
    this.closeTxnr = this.txnr++;
    return this.closeTxnr;
  }

  /** The oldest unanswered command that was sent before `now - timeout`, or -1. */
  overdue(now: number, timeout: number): number {
    if (this.unanswered === 0 || now - this.sentAt[this.head]! <= timeout) return -1;
    return this.base + this.head;
  }

  /** Records one answer. `broken`: the session cannot go on (see `broken`). */
  answer(txnr: number, code: number, text: string): AnswerResult {
    if (txnr === 1) {
      this.openAnswer = { code, text };
      return 'ok';
    }
    const i = txnr - this.base;
    if (i < this.head || i >= this.codes.length || this.codes[i] !== 0) {
      if (txnr === this.closeTxnr) {
        this.closeAnswered = true;
        return 'ok';
      }
      this.broken ??= new Error(`answer for transaction ${txnr}, which is not open`);
      return 'broken';
    }
    this.codes[i] = code;
    if (code === 200) return 'ok';
    this.refusals++;
    this.refusal ??= new Error(`server answered ${code} ${text}`);
    this.endedByReceiver = true;
    return 'refused';
  }

  /** `200 OK` for `txnr`, read in place by the parser; true when the session cannot go on. */
  readonly onOk = (txnr: number): boolean => this.answer(txnr, 200, 'OK') === 'broken';

  /** Any other frame from the server; true when the session cannot go on. */
  readonly onFrame = (f: RelpFrame): boolean => {
    if (f.command === 'serverclose') {
      this.broken ??= new Error('the server closed the session (serverclose)');
      this.endedByReceiver = true;
      return true;
    }
    if (f.command !== 'rsp') {
      this.broken ??= new Error(`unexpected ${f.command} from the server`);
      return true;
    }
    const rsp = parseRsp(f.data);
    return this.answer(f.txnr, rsp.code, rsp.text) === 'broken';
  };

  /** Frees the answered prefix: returns how many commands, oldest first, were answered `200 OK`. */
  takeAnswered(): number {
    const from = this.head;
    while (this.head < this.codes.length && this.codes[this.head] === 200) this.head++;
    const n = this.head - from;
    if (this.head > 4096 && this.head * 2 > this.codes.length) {
      this.codes = this.codes.slice(this.head);
      this.sentAt = this.sentAt.slice(this.head);
      this.base += this.head;
      this.head = 0;
    }
    return n;
  }

  /**
   * A refusal not yet acted on, and clears it. Records before the refused one are freed first
   * (takeAnswered); the refused one and the rest are sent again in a new session.
   */
  takeRefusal(): Error | null {
    const r = this.refusal;
    this.refusal = null;
    return r;
  }
}
