import { loadConfig } from './config.js';

/** `sluice reload --pid PID`: validates the config first, then asks that sluice to reload it (SIGHUP). */
export async function reloadCommand(file: string, pidArg: string | undefined): Promise<number> {
  const pid = Number(pidArg);
  if (!Number.isInteger(pid) || pid <= 0) {
    process.stderr.write(`sluice reload: --pid PID is missing or not a process id\n`);
    return 2;
  }
  const loaded = await loadConfig(file);
  if (!loaded) {
    process.stderr.write(`sluice reload: not signalled; PID ${pid} keeps its running configuration\n`);
    return 1;
  }
  try {
    process.kill(pid, 'SIGHUP');
  } catch (err) {
    process.stderr.write(`sluice reload: cannot signal PID ${pid}: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(`${file}: OK; asked PID ${pid} to reload it\n`);
  return 0;
}
