// The child process of load-isolated.ts: loads and validates one config file, writes the answer
// to stdout (v8.serialize), exits.
import { serialize } from 'node:v8';
import type { ChildAnswer } from './load-isolated.js';
import { ConfigError, loadConfigFile } from './load.js';

let answer: ChildAnswer;
try {
  answer = { loaded: loadConfigFile(process.argv[2] ?? '', process.env) };
} catch (err) {
  if (err instanceof ConfigError) answer = { problems: err.problems };
  else answer = { error: err instanceof Error ? (err.stack ?? err.message) : String(err) };
}
// A pipe: Node writes it synchronously on Linux, so the answer is whole before the process exits.
process.stdout.write(serialize(answer));
