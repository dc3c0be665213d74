// Loaded with `node --import` into a sluice process under test: it SIGKILLs that process at one
// chosen point of the nats source, so that a test can aim at the moments between its steps.
//   SLUICE_TEST_KILL=intend:<n>  after the n-th batch's intents are in the ack log, before it is handed on
//   SLUICE_TEST_KILL=settle:<n>  when the n-th committed batch is heard of, before the ack log says so
const [where, count] = (process.env.SLUICE_TEST_KILL ?? '').split(':');
const n = Number(count);
if (where && n > 0) {
  const root = new URL('../../dist/', import.meta.url);
  let seen = 0;
  const killAt = () => {
    if (++seen >= n) process.kill(process.pid, 'SIGKILL');
  };
  if (where === 'intend') {
    const { AckLog } = await import(new URL('sources/nats/ack-log.js', root).href);
    const intend = AckLog.prototype.intend;
    AckLog.prototype.intend = function (...args) {
      intend.apply(this, args);
      killAt();
    };
  } else if (where === 'settle') {
    const { NatsSource } = await import(new URL('sources/nats/index.js', root).href);
    const settle = NatsSource.prototype.settle;
    NatsSource.prototype.settle = function (seqs, err) {
      if (!err) killAt();
      return settle.call(this, seqs, err);
    };
  } else throw new Error(`SLUICE_TEST_KILL: unknown point ${where}`);
}
