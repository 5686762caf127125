/**
 * A real `contained host` process for crash and restart tests: started from the sources with the
 * same flags the launcher uses, resolved with its URL once it listens, and killed by the caller.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';

const MAIN = path.resolve('host/cli/main.ts');

export interface HostProcess {
  child: ChildProcess;
  url: string;
}

/** Start `contained host --config FILE --in-process`; `track` is told the child at once (for cleanup). */
export function startHostProcess(configFile: string, track: (child: ChildProcess) => void, env: Record<string, string> = {}): Promise<HostProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--no-node-snapshot', '--import', 'tsx', MAIN, 'host', '--config', configFile, '--in-process'], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    track(child);
    let out = '';
    const timer = setTimeout(() => reject(new Error(`host did not start: ${out}`)), 30_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      out += chunk.toString();
      const match = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (match) {
        clearTimeout(timer);
        resolve({ child, url: match[1] as string });
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.on('exit', () => {
      clearTimeout(timer);
      reject(new Error(`host exited early: ${out}`));
    });
  });
}

/** Resolves when the process has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', () => resolve());
  });
}

/** The messages delivered into the maildir `<dir>/mail` (file names under `new/`); none when it does not exist yet. */
export function maildirMessages(dir: string): string[] {
  try {
    return readdirSync(path.join(dir, 'mail', 'new'));
  } catch {
    return [];
  }
}
