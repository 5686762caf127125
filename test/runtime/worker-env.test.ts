/**
 * A worker process hosts untrusted code (inside isolates). Should an isolate escape ever happen
 * (GHSA-864f-rcv7-6rh4 was one: memory corruption from inside an isolate), the worker must hold
 * nothing worth taking: it gets no copy of the host's environment — where operator tokens, SMTP
 * passwords and database URLs live — only the few variables it needs to start.
 */
import { readFileSync } from 'node:fs';
import { afterAll, describe, expect, it } from 'vitest';
import { createSandbox } from '../../runtime/index.js';
import { expectHealthy, until, workerPids } from '../helpers/sandbox.js';

const SECRETS = {
  CONTAINED_TOKEN: 'operator-token-in-host-env',
  CONTAINED_SMTP_PASSWORD: 'smtp-password-in-host-env',
  DATABASE_URL: 'postgres://user:db-password-in-host-env@db/contained',
  SOME_API_KEY: 'api-key-in-host-env',
};

describe('worker environment', () => {
  const saved: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(SECRETS)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  const sb = createSandbox({ workers: 2 });
  afterAll(async () => {
    await sb.close();
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  });

  it.skipIf(process.platform !== 'linux')('holds none of the host environment\'s secrets, and runs still work', async () => {
    await Promise.all([1, 2].map(() => expectHealthy(sb)));
    await until(() => workerPids().length === 2);
    for (const pid of workerPids()) {
      const environ = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0').filter((e) => e !== '');
      const names = environ.map((e) => e.slice(0, e.indexOf('=')));
      for (const [name, value] of Object.entries(SECRETS)) {
        expect(names, `worker ${pid}`).not.toContain(name);
        expect(environ.join('\n'), `worker ${pid}`).not.toContain(value);
      }
      expect(names.filter((n) => n.startsWith('CONTAINED_')).sort()).toEqual(['CONTAINED_WARM_ISOLATES', 'CONTAINED_WARM_MEMORY_MB']);
    }
  });
});
