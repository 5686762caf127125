// Preloaded into every Node process of one `contained run` by bench/profile/cli.ts (through
// NODE_OPTIONS="--import <this file>", which the launcher, the CLI and the worker all inherit).
// Records, on the epoch clock shared by all processes: process start, Node's bootstrap done, this
// preload (user code begins), child processes spawned or forked and their messages, and exit;
// appends one JSON line per process to <dir>/<pid>.json, <dir> given as `?dir=` on this file's URL
// (worker processes get an allowlisted environment, but NODE_OPTIONS passes). Plain JS: it must
// not need tsx, or it would change what it measures.
import childProcess from 'node:child_process';
import { appendFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';

const dir = new URL(import.meta.url).searchParams.get('dir');
if (dir) {
  const at = () => performance.timeOrigin + performance.now();
  const events = [
    ['process start', performance.timeOrigin],
    ['node bootstrap done', performance.timeOrigin + performance.nodeTiming.bootstrapComplete],
    ['user code begins', at()],
  ];
  const fork = childProcess.fork;
  const spawn = childProcess.spawn;
  childProcess.fork = function (...args) {
    events.push(['fork worker', at()]);
    const child = fork.apply(this, args);
    child.on('message', (m) => {
      if (m?.t === 'ready' || m?.t === 'done') events.push([`worker says ${m.t}`, at()]);
    });
    child.on('exit', () => events.push(['worker exited', at()]));
    return child;
  };
  childProcess.spawn = function (...args) {
    events.push(['spawn child', at()]);
    const child = spawn.apply(this, args);
    child.on('exit', () => events.push(['child exited', at()]));
    return child;
  };
  syncBuiltinESMExports();
  if (process.send) {
    const send = process.send.bind(process);
    process.send = (m, ...rest) => {
      if (m?.t === 'ready' || m?.t === 'done') events.push([`sends ${m.t}`, at()]);
      return send(m, ...rest);
    };
    process.on('message', (m) => {
      if (m?.t === 'run' || m?.t === 'exit') events.push([`receives ${m.t}`, at()]);
    });
  }
  process.on('exit', () => {
    events.push(['exit', at()]);
    appendFileSync(`${dir}/${process.pid}.json`, `${JSON.stringify({ pid: process.pid, argv: process.argv.slice(1), execArgv: process.execArgv, events })}\n`);
  });
}
