// `npm run build` (and `prepack`, so every tarball is built from the sources it is packed with):
// a clean dist/ — stale output of a deleted source must never be shipped — then tsc, then the files
// the compiled code reads at run time: the web console's static assets and the example agents that
// `contained demo` builds (not their built images).
import { spawnSync } from 'node:child_process';
import { cpSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const root = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, 'dist');

rmSync(dist, { recursive: true, force: true });
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
const compiled = spawnSync(process.execPath, [tsc, '-p', path.join(root, 'tsconfig.build.json')], { stdio: 'inherit', cwd: root });
if (compiled.status !== 0) {
  process.stderr.write(`build: tsc failed (exit ${compiled.status ?? compiled.signal})\n`);
  process.exit(1);
}
cpSync(path.join(root, 'host/console/static'), path.join(dist, 'host/console/static'), { recursive: true });
const examples = path.join(root, 'sandbox-images/examples');
cpSync(examples, path.join(dist, 'sandbox-images/examples'), {
  recursive: true,
  filter: (src) => path.relative(examples, src) !== 'dist',
});
