/**
 * The HTTP API bench's client, in a process of its own as a real API client is (bench/api.ts): the
 * fetch client's own work (~1 ms of CPU per run: undici, its parser, streams) does not run on the
 * host's event loop. Forked with IPC: `{ base, token, digest }` once, then `{ runs }` per round;
 * answers `{ perSecond }` or `{ error }`.
 */
import { overHttp, rate } from './api.js';

let target: { base: string; token: string; digest: string } | undefined;
process.on('message', (message: { base?: string; token?: string; digest?: string; runs?: number }) => {
  if (message.base !== undefined) {
    target = { base: message.base, token: message.token ?? '', digest: message.digest ?? '' };
    process.send?.({ ready: true });
    return;
  }
  const t = target;
  if (!t || message.runs === undefined) return;
  rate((i) => overHttp(t.base, t.token, t.digest, i), message.runs).then(
    (perSecond) => process.send?.({ perSecond }),
    (error: unknown) => process.send?.({ error: String((error as Error).message ?? error) }),
  );
});
process.on('disconnect', () => process.exit(0));
