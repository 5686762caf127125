/**
 * The resident sandbox process (`contained sandbox start|stop|status`, runtime/resident-*.ts), with
 * real processes: `contained run` goes through it when its socket answers (proved by its run
 * counter), with the same output, exit codes, limits and capability calls as a forked worker; it
 * falls back to a fork when the resident is stopped, gone (a stale socket: removed, one note) or
 * refused (a folder others may write); a client that disconnects cancels its run; a run that
 * crashes the resident ends the runs beside it (the stated limit), and the next run forks.
 * Each describe uses its own folder (CONTAINED_RESIDENT_DIR), never the user's.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';

const BIN = path.resolve('bin/contained.js');

interface Result {
  code: number;
  stdout: string;
  stderr: string;
}

function contained(args: string[], env: Record<string, string>, cwd: string): Promise<Result> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd, timeout: 120_000, env: { ...process.env, ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? Number((error as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

interface Status {
  state: 'running' | 'not running';
  current?: boolean;
  pid?: number;
  runs?: number;
  running?: number;
  cancelled?: number;
}

async function status(env: Record<string, string>, cwd: string): Promise<Status> {
  const res = await contained(['sandbox', 'status', '--json'], env, cwd);
  expect([0, 1]).toContain(res.code);
  return JSON.parse(res.stdout) as Status;
}

async function until(check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 100));
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function setup(): { cwd: string; dir: string; env: Record<string, string> } {
  const cwd = mkdtempSync(path.join(os.tmpdir(), 'contained-resident-'));
  writeFileSync(path.join(cwd, 'hello.js'), 'export default function main(input) { return { hello: input }; }\n');
  writeFileSync(path.join(cwd, 'loop.js'), 'export default function main() { for (;;) {} }\n');
  writeFileSync(path.join(cwd, 'read.js'), "export default async (input, caps) => caps.notes.read('a.txt');\n");
  writeFileSync(path.join(cwd, 'busy.js'), 'export default function main() { const end = Date.now() + 4000; while (Date.now() < end) {} return 1; }\n');
  writeFileSync(path.join(cwd, 'fatal.js'), 'export default function main() { return ("x".repeat(2 ** 27) + "y").split("").length; }\n');
  mkdirSync(path.join(cwd, 'notes'));
  writeFileSync(path.join(cwd, 'notes', 'a.txt'), 'from a file');
  const dir = path.join(cwd, 'rd');
  return { cwd, dir, env: { CONTAINED_RESIDENT_DIR: dir } };
}

describe('contained sandbox: a resident sandbox process serves contained run', () => {
  const { cwd, dir, env } = setup();
  let pid = 0;
  afterAll(async () => {
    await contained(['sandbox', 'stop'], env, cwd);
  });

  it('start: a 0700 folder, a 0600 socket, status answers with a pid; a second start says it is already running', async () => {
    expect((await status(env, cwd)).state).toBe('not running');
    const started = await contained(['sandbox', 'start'], env, cwd);
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toMatch(/^started: running \(pid \d+/);
    const s = await status(env, cwd);
    expect(s.state).toBe('running');
    pid = s.pid as number;
    expect(alive(pid)).toBe(true);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    const sock = lstatSync(path.join(dir, 'sandbox.sock'));
    expect(sock.isSocket()).toBe(true);
    expect(sock.mode & 0o777).toBe(0o600);
    const again = await contained(['sandbox', 'start'], env, cwd);
    expect(again.code).toBe(0);
    expect(again.stdout).toContain(`already running (pid ${pid}`);
  });

  it('contained run hello.js goes through it (its run counter) and prints what a forked worker prints', async () => {
    const before = (await status(env, cwd)).runs as number;
    const viaResident = await contained(['run', 'hello.js', '--input', '"x"', '--json'], env, cwd);
    expect(viaResident.code, viaResident.stderr).toBe(0);
    expect((await status(env, cwd)).runs).toBe(before + 1);
    const forked = await contained(['run', 'hello.js', '--input', '"x"', '--json'], { ...env, CONTAINED_RESIDENT: '0' }, cwd);
    expect(forked.code).toBe(0);
    expect((await status(env, cwd)).runs).toBe(before + 1);
    const a = JSON.parse(viaResident.stdout) as { status: string; value: unknown };
    const b = JSON.parse(forked.stdout) as { status: string; value: unknown };
    expect(a.status).toBe('ok');
    expect(a.value).toEqual({ hello: 'x' });
    expect(a.value).toEqual(b.value);
    expect(viaResident.stderr).toBe('');
  });

  it('capability calls go back to the contained run process (--grant fs)', async () => {
    const before = (await status(env, cwd)).runs as number;
    const res = await contained(['run', 'read.js', '--grant', 'notes=fs:{"root":"./notes","readOnly":true}', '--json'], env, cwd);
    expect(res.code, res.stderr).toBe(0);
    const out = JSON.parse(res.stdout) as { status: string; value: unknown; usage: { calls: number } };
    expect(out.value).toBe('from a file');
    expect(out.usage.calls).toBe(1);
    expect((await status(env, cwd)).runs).toBe(before + 1);
  });

  it('limits hold: a CPU loop ends CPU_LIMIT with exit 3, and the resident serves the next run', async () => {
    const before = (await status(env, cwd)).runs as number;
    const res = await contained(['run', 'loop.js', '--cpu-ms', '200', '--wall-ms', '60000'], env, cwd);
    expect(res.code).toBe(3);
    expect(res.stdout).toMatch(/^error CPU_LIMIT/);
    const next = await contained(['run', 'hello.js'], env, cwd);
    expect(next.code).toBe(0);
    expect((await status(env, cwd)).runs).toBe(before + 2);
    expect(alive(pid)).toBe(true);
  });

  it('a client that disconnects mid-run cancels its run', async () => {
    const before = await status(env, cwd);
    const client: ChildProcess = spawn(process.execPath, [BIN, 'run', 'loop.js', '--cpu-ms', '600000', '--wall-ms', '600000'], { cwd, env: { ...process.env, ...env }, stdio: 'ignore' });
    await until(async () => (await status(env, cwd)).running === 1);
    client.kill('SIGKILL');
    await until(async () => {
      const s = await status(env, cwd);
      return s.running === 0 && s.cancelled === (before.cancelled as number) + 1;
    });
    expect(alive(pid)).toBe(true);
    expect((await contained(['run', 'hello.js'], env, cwd)).code).toBe(0);
  });

  it('refuses a frame that is not the protocol, and one past the size bound (the connection ends, the resident lives)', async () => {
    const socketPath = path.join(dir, 'sandbox.sock');
    const closedAfter = (payload: Buffer | string): Promise<boolean> =>
      new Promise((resolve) => {
        const socket = connect(socketPath);
        socket.on('error', () => undefined);
        socket.resume();
        socket.on('close', () => resolve(true));
        socket.on('connect', () => socket.write(payload));
      });
    expect(await closedAfter('{"t":"run","spec":42}\n')).toBe(true);
    expect(await closedAfter(Buffer.alloc(64 * 1024 * 1024 + 16, 0x20))).toBe(true);
    expect(alive(pid)).toBe(true);
    expect((await status(env, cwd)).state).toBe('running');
  });

  it('stop: a run in flight ends CANCELLED, the process exits, the socket goes, status says not running; contained run forks, with nothing on stderr', async () => {
    const inFlight = contained(['run', 'loop.js', '--cpu-ms', '600000', '--wall-ms', '600000'], env, cwd);
    await until(async () => (await status(env, cwd)).running === 1);
    const res = await contained(['sandbox', 'stop'], env, cwd);
    const cancelled = await inFlight;
    expect(cancelled.code).toBe(1);
    expect(cancelled.stdout).toMatch(/^error CANCELLED: the resident sandbox process is stopping/);
    expect(res.code).toBe(0);
    expect(res.stdout).toContain(`stopped (pid ${pid})`);
    expect(alive(pid)).toBe(false);
    expect(existsSync(path.join(dir, 'sandbox.sock'))).toBe(false);
    const s = await contained(['sandbox', 'status'], env, cwd);
    expect(s.code).toBe(1);
    expect(s.stdout).toBe('not running\n');
    const run = await contained(['run', 'hello.js'], env, cwd);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe('');
    expect((await contained(['sandbox', 'stop'], env, cwd)).stdout).toBe('not running\n');
  });
});

describe('contained sandbox: a run that crashes the resident', () => {
  const { cwd, env } = setup();
  afterAll(async () => {
    await contained(['sandbox', 'stop'], env, cwd);
  });

  it('ends the run beside it SANDBOX_CRASHED (runs of one user share the process); the next run forks with one note, then none', async () => {
    expect((await contained(['sandbox', 'start'], env, cwd)).code).toBe(0);
    const { pid } = await status(env, cwd);
    const innocent = contained(['run', 'busy.js', '--cpu-ms', '60000', '--wall-ms', '60000'], env, cwd);
    await until(async () => (await status(env, cwd)).running === 1);
    const hostile = await contained(['run', 'fatal.js'], env, cwd);
    expect(hostile.code).toBe(1);
    expect(hostile.stdout).toMatch(/^error SANDBOX_CRASHED/);
    const beside = await innocent;
    expect(beside.code).toBe(1);
    expect(beside.stdout).toMatch(/^error SANDBOX_CRASHED/);
    await until(async () => !alive(pid as number));
    const next = await contained(['run', 'hello.js'], env, cwd);
    expect(next.code).toBe(0);
    expect(next.stdout).toContain('"hello": null');
    expect(next.stderr.split('\n').filter(Boolean).length).toBeLessThanOrEqual(1);
    const after = await contained(['run', 'hello.js'], env, cwd);
    expect(after.code).toBe(0);
    expect(after.stderr).toBe('');
    expect((await contained(['sandbox', 'status'], env, cwd)).code).toBe(1);
  });
});

describe('contained sandbox: stale sockets and unsafe folders', () => {
  const { cwd, dir, env } = setup();
  afterAll(async () => {
    await contained(['sandbox', 'stop'], env, cwd);
  });

  it('a socket nobody listens on: run forks with one note and removes it; status and start clean it up too', async () => {
    const stale = (): Promise<void> =>
      new Promise((resolve) => {
        mkdirSync(dir, { recursive: true, mode: 0o700 });
        // A process that listens on the socket path and is then killed leaves the file behind.
        const listener = spawn(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path.join(dir, 'sandbox.sock'))}, () => process.stdout.write('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] });
        listener.stdout.once('data', () => {
          listener.kill('SIGKILL');
          listener.once('exit', () => resolve());
        });
      });
    await stale();
    expect(lstatSync(path.join(dir, 'sandbox.sock')).isSocket()).toBe(true);
    const run = await contained(['run', 'hello.js'], env, cwd);
    expect(run.code).toBe(0);
    expect(run.stderr).toMatch(/resident sandbox process is gone/);
    expect(existsSync(path.join(dir, 'sandbox.sock'))).toBe(false);
    await stale();
    expect((await contained(['sandbox', 'status'], env, cwd)).code).toBe(1);
    expect(existsSync(path.join(dir, 'sandbox.sock'))).toBe(false);
    await stale();
    const started = await contained(['sandbox', 'start'], env, cwd);
    expect(started.code, started.stderr).toBe(0);
    expect((await status(env, cwd)).state).toBe('running');
    expect((await contained(['sandbox', 'stop'], env, cwd)).code).toBe(0);
  });

  it('a socket that accepts but never greets (a wedged resident): run forks after the connect timeout, exit 0, same output', async () => {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const socketPath = path.join(dir, 'sandbox.sock');
    const wedged = spawn(process.execPath, ['-e', `require('net').createServer(() => {}).listen(${JSON.stringify(socketPath)}, () => process.stdout.write('up'))`], { stdio: ['ignore', 'pipe', 'ignore'] });
    try {
      await new Promise((resolve) => wedged.stdout.once('data', resolve));
      const run = await contained(['run', 'hello.js', '--input', '7'], env, cwd);
      expect(run.code, run.stderr).toBe(0);
      expect(run.stdout).toContain('"hello": 7');
      expect(run.stderr).toBe('');
    } finally {
      wedged.kill('SIGKILL');
      await new Promise((resolve) => wedged.once('exit', resolve));
    }
    expect((await contained(['sandbox', 'status'], env, cwd)).code).toBe(1);
  });

  it('a folder writable by others is refused: start fails RESIDENT_DIR_UNSAFE, run forks without using its socket', async () => {
    expect((await contained(['sandbox', 'start'], env, cwd)).code).toBe(0);
    const { runs } = await status(env, cwd);
    chmodSync(dir, 0o777);
    try {
      const run = await contained(['run', 'hello.js'], env, cwd);
      expect(run.code).toBe(0);
      expect(run.stderr).toMatch(/not using the resident sandbox process: the folder .* writable by group or others/);
      const start = await contained(['sandbox', 'start'], env, cwd);
      expect(start.code).toBe(1);
      expect(start.stderr).toMatch(/^RESIDENT_DIR_UNSAFE: /);
    } finally {
      chmodSync(dir, 0o700);
    }
    expect((await status(env, cwd)).runs).toBe(runs);
  });

  it('usage errors exit 2', async () => {
    expect((await contained(['sandbox'], env, cwd)).code).toBe(2);
    expect((await contained(['sandbox', 'status', '--idle-seconds', '5'], env, cwd)).code).toBe(2);
    expect((await contained(['sandbox', 'start', '--idle-seconds', '0'], env, cwd)).code).toBe(2);
    const help = await contained(['sandbox', '--help'], env, cwd);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^Usage: contained sandbox start\|stop\|status/);
  });

  it('stops by itself after --idle-seconds with no client', async () => {
    await contained(['sandbox', 'stop'], env, cwd);
    expect((await contained(['sandbox', 'start', '--idle-seconds', '2'], env, cwd)).code).toBe(0);
    const { pid } = await status(env, cwd);
    await until(async () => !alive(pid as number), 60_000);
    expect(existsSync(path.join(dir, 'sandbox.sock'))).toBe(false);
  });
});

describe('contained sandbox: a resident of other code (the package upgraded under it)', () => {
  const { cwd, env } = setup();
  const entry = path.resolve('runtime/resident-main.ts');
  const { atime, mtime } = statSync(entry);
  afterAll(async () => {
    utimesSync(entry, atime, mtime);
    await contained(['sandbox', 'stop'], env, cwd);
  });

  it('is not used by contained run, status says so, and start replaces it', async () => {
    expect((await contained(['sandbox', 'start'], env, cwd)).code).toBe(0);
    const old = await status(env, cwd);
    expect(old.current).toBe(true);
    // Its key names its entry file's mtime: a newer file is other code.
    utimesSync(entry, atime, new Date(mtime.getTime() + 60_000));
    const run = await contained(['run', 'hello.js'], env, cwd);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe('');
    const after = await status(env, cwd);
    expect(after.current).toBe(false);
    expect(after.runs).toBe(old.runs);
    expect((await contained(['sandbox', 'status'], env, cwd)).stdout).toMatch(/runs other code than this contained/);
    const started = await contained(['sandbox', 'start'], env, cwd);
    expect(started.code, started.stderr).toBe(0);
    expect(started.stdout).toContain(`stopped pid ${old.pid}, which ran other code`);
    expect(alive(old.pid as number)).toBe(false);
    const now = await status(env, cwd);
    expect(now.current).toBe(true);
    expect(now.pid).not.toBe(old.pid);
    expect((await contained(['run', 'hello.js'], env, cwd)).code).toBe(0);
    expect((await status(env, cwd)).runs).toBe(1);
  });
});
