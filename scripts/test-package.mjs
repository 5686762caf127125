// `npm run test:package`: what a platform team gets from `npm install ai-contained`, tried as a new user
// would. Packs the tarball (prepack builds dist/ from a clean slate), checks what is in it and what is
// not, installs it into a fresh temporary project with `npm install <tarball>` (real registry; the native
// modules build against npm's nodedir, about a minute), then there: runs the README's library example as
// written, shows the one-line refusal without --no-node-snapshot, `npx contained run hello.js` (the
// README's agent), `npx contained version`, the host entry, the types of both entries, and that deep
// imports are closed. Slow, so it is not part of `npm test`; CI runs it once, on Node 24.
// The temporary folder is removed at the end, pass or fail.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.join(path.dirname(fileURLToPath(import.meta.url)), '..');
const PKG = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8'));
const FLAG = '--no-node-snapshot';
/** The README's library example sits between these two lines, as one ```js fenced block. */
const EXAMPLE_START = '<!-- example:library -->';
const EXAMPLE_END = '<!-- /example:library -->';
/** Its copy in the repository (what the README includes verbatim; the two must not differ). */
const EXAMPLE_FILE = path.join(ROOT, 'docs/examples/library.mjs');

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const npx = process.platform === 'win32' ? 'npx.cmd' : 'npx';
let failures = 0;

function run(cmd, args, { cwd, env, timeoutMs = 600_000 } = {}) {
  const result = spawnSync(cmd, args, { cwd, encoding: 'utf8', timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024, env: { ...process.env, ...env } });
  return { code: result.status ?? -1, stdout: result.stdout ?? '', stderr: result.stderr ?? '', error: result.error };
}

function check(name, ok, detail = '') {
  if (ok) process.stdout.write(`ok - ${name}\n`);
  else {
    failures++;
    process.stdout.write(`not ok - ${name}\n${detail ? `${String(detail).replace(/^/gm, '  # ')}\n` : ''}`);
  }
  return ok;
}

function must(name, result) {
  if (!check(name, result.code === 0, `exit ${result.code}${result.error ? ` (${result.error.message})` : ''}\n${result.stdout}\n${result.stderr}`)) throw new Error(`${name} failed`);
  return result;
}

/** The ```js block between the markers in README.md, or undefined while the README has none. */
function readmeExample(readme) {
  const start = readme.indexOf(EXAMPLE_START);
  if (start < 0) return undefined;
  const end = readme.indexOf(EXAMPLE_END, start);
  const block = /```js\n([\s\S]*?)```/.exec(readme.slice(start, end < 0 ? undefined : end));
  if (!block) throw new Error(`README.md: no \`\`\`js block between ${EXAMPLE_START} and ${EXAMPLE_END}`);
  return block[1];
}

/** README's quickstart agent: the body of `cat > hello.js <<'EOF' … EOF`. */
function readmeHello(readme) {
  const hello = /cat > hello\.js <<'EOF'\n([\s\S]*?)\nEOF\n/.exec(readme);
  if (!hello) throw new Error("README.md: no `cat > hello.js <<'EOF'` block");
  return `${hello[1]}\n`;
}

/** Expected output of an example: the `// …` comment after each console.log line, in order. */
function expectedOutput(source) {
  return [...source.matchAll(/console\.log\(.*\);\s*\/\/ (.+)$/gm)].map((m) => m[1].trim());
}

const tmp = mkdtempSync(path.join(tmpdir(), 'contained-package-'));
try {
  const readme = readFileSync(path.join(ROOT, 'README.md'), 'utf8');

  // 1. The tarball.
  const packed = must('npm pack (prepack builds dist/)', run(npm, ['pack', '--json', '--pack-destination', tmp], { cwd: ROOT }));
  const [info] = JSON.parse(packed.stdout);
  const tarball = path.join(tmp, info.filename);
  const files = info.files.map((f) => f.path);
  process.stdout.write(`# ${info.filename}: ${(info.size / 1024).toFixed(0)} KiB packed, ${(info.unpackedSize / 1024).toFixed(0)} KiB unpacked, ${info.entryCount} files\n`);
  const targets = [PKG.main, PKG.types, ...Object.values(PKG.bin), ...Object.values(PKG.exports).flatMap((e) => (typeof e === 'string' ? [e] : Object.values(e)))];
  const required = [
    'package.json', 'README.md', 'LICENSE', 'CHANGELOG.md', 'dist/preflight.js', 'dist/runtime/worker-main.js', 'dist/host/cli/main.js',
    'dist/host/console/static/index.html', 'dist/sandbox-images/examples/report-digest/image/manifest.json', 'docs/errors.md',
    ...targets.map((t) => path.posix.normalize(t)),
  ];
  const missing = [...new Set(required)].filter((f) => !files.includes(f));
  check('the tarball holds dist/, the console, bin/, README, LICENSE, CHANGELOG, docs and every exports/bin target', missing.length === 0, `missing: ${missing.join(', ')}`);
  const unwanted = files.filter(
    (f) =>
      /^(test|bench|scripts|runtime|host|capabilities|sandbox-images|node_modules|\.ci|\.node|\.contained)\//.test(f) ||
      /^dist\/(bench|test)\//.test(f) ||
      /^dist\/sandbox-images\/examples\/dist\//.test(f) ||
      /\.test\.|\.map$|\.tgz$/.test(f) ||
      (f.endsWith('.ts') && !f.endsWith('.d.ts')),
  );
  check('the tarball holds no tests, TypeScript sources, benchmarks, source maps or archives', unwanted.length === 0, unwanted.slice(0, 20).join('\n'));

  // 2. A fresh project that installs it, as the README says (zod for the capability schemas).
  const app = path.join(tmp, 'app');
  mkdirSync(app);
  writeFileSync(path.join(app, 'package.json'), `${JSON.stringify({ name: 'contained-package-test', private: true, type: 'module' }, null, 2)}\n`);
  const zod = `zod@${PKG.dependencies.zod}`;
  const started = Date.now();
  must(`npm install <tarball> ${zod}`, run(npm, ['install', '--no-audit', '--no-fund', '--loglevel=error', tarball, zod], { cwd: app }));
  process.stdout.write(`# installed in ${((Date.now() - started) / 1000).toFixed(0)} s\n`);

  // 3. The README's library example, as written.
  const fromReadme = readmeExample(readme);
  const fromFile = existsSync(EXAMPLE_FILE) ? readFileSync(EXAMPLE_FILE, 'utf8') : undefined;
  if (fromReadme === undefined) process.stdout.write(`# README.md has no ${EXAMPLE_START} block yet: running docs/examples/library.mjs\n`);
  else if (fromFile !== undefined) check('README library example equals docs/examples/library.mjs', fromReadme === fromFile, 'the README block and docs/examples/library.mjs differ');
  const example = fromReadme ?? fromFile;
  if (example === undefined) throw new Error('no library example: neither the README block nor docs/examples/library.mjs');
  const expected = expectedOutput(example);
  check('the example states its expected output (// comments after console.log)', expected.length > 0);
  writeFileSync(path.join(app, 'app.mjs'), example);
  const lib = run(process.execPath, [FLAG, 'app.mjs'], { cwd: app, env: { NODE_OPTIONS: '' }, timeoutMs: 120_000 });
  check('node --no-node-snapshot app.mjs prints what the example says', lib.code === 0 && lib.stdout.trimEnd() === expected.join('\n'), `exit ${lib.code}\nexpected:\n${expected.join('\n')}\ngot:\n${lib.stdout}${lib.stderr}`);

  // 4. Without the flag: one line naming it, a non-zero exit, before isolated-vm runs anything.
  const bare = run(process.execPath, ['app.mjs'], { cwd: app, env: { NODE_OPTIONS: '' }, timeoutMs: 120_000 });
  const errorLines = bare.stderr.split('\n').filter((l) => l.startsWith('Error: '));
  check(
    'node app.mjs (no flag) fails with one error line naming --no-node-snapshot and NODE_OPTIONS',
    bare.code !== 0 && bare.stdout === '' && errorLines.length === 1 && errorLines[0].includes(FLAG) && errorLines[0].includes(`NODE_OPTIONS=${FLAG}`),
    `exit ${bare.code}\n${bare.stdout}${bare.stderr}`,
  );
  const viaEnv = run(process.execPath, ['app.mjs'], { cwd: app, env: { NODE_OPTIONS: FLAG }, timeoutMs: 120_000 });
  check('NODE_OPTIONS=--no-node-snapshot node app.mjs works', viaEnv.code === 0 && viaEnv.stdout.trimEnd() === expected.join('\n'), `exit ${viaEnv.code}\n${viaEnv.stdout}${viaEnv.stderr}`);

  // 5. The CLI, as the README's quickstart runs it.
  writeFileSync(path.join(app, 'hello.js'), readmeHello(readme));
  const hello = run(npx, ['contained', 'run', 'hello.js', '--input', '{"name":"ada"}'], { cwd: app, timeoutMs: 120_000 });
  check('npx contained run hello.js --input \'{"name":"ada"}\'', hello.code === 0 && hello.stdout.includes('hello ada'), `exit ${hello.code}\n${hello.stdout}${hello.stderr}`);
  const helloJson = run(npx, ['contained', 'run', 'hello.js', '--input', '{"name":"ada"}', '--json'], { cwd: app, timeoutMs: 120_000 });
  let outcome;
  try {
    outcome = JSON.parse(helloJson.stdout);
  } catch {
    outcome = undefined;
  }
  check('npx contained run … --json: status ok, the greeting', outcome?.status === 'ok' && outcome?.value?.greeting === 'hello ada', helloJson.stdout + helloJson.stderr);
  const ivmVersion = createRequire(path.join(app, 'node_modules/ai-contained/package.json'))('isolated-vm/package.json').version;
  const version = run(npx, ['contained', 'version'], { cwd: app, timeoutMs: 60_000 });
  check(
    'npx contained version: ai-contained, node, isolated-vm',
    version.code === 0 && version.stdout === `ai-contained ${PKG.version}\nnode ${process.versions.node}\nisolated-vm ${ivmVersion}\n`,
    version.stdout + version.stderr,
  );

  // 6. The host entry, closed deep imports, and the types of both entries.
  const host = run(process.execPath, [FLAG, '--input-type=module', '-e', "const h = await import('ai-contained/host'); console.log(typeof h.startHost, typeof h.parseHostConfig)"], { cwd: app });
  check("import('ai-contained/host') exports startHost", host.stdout === 'function function\n', host.stdout + host.stderr);
  const deep = run(process.execPath, [FLAG, '--input-type=module', '-e', "await import('ai-contained/dist/runtime/index.js')"], { cwd: app });
  check('deep imports are not exported', deep.code !== 0 && deep.stderr.includes('ERR_PACKAGE_PATH_NOT_EXPORTED'), deep.stderr);
  writeFileSync(
    path.join(app, 'check.ts'),
    [
      "import { createSandbox, defineCapability, type RunOutcome, type Sandbox } from 'ai-contained';",
      "import { startHost, type Host, type HostConfig } from 'ai-contained/host';",
      "const sandbox: Sandbox = createSandbox({ isolation: 'in-process' });",
      "export const outcome: Promise<RunOutcome> = sandbox.run({ source: 'export default async () => 1' });",
      'export const start: (options: Parameters<typeof startHost>[0]) => Promise<Host> = startHost;',
      'export type Config = HostConfig;',
      'export const define = defineCapability;',
      '',
    ].join('\n'),
  );
  writeFileSync(
    path.join(app, 'tsconfig.json'),
    JSON.stringify({
      // skipLibCheck off: the entries' declarations must type-check against what the package installs
      // (a type from a devDependency would fail here for the user too).
      compilerOptions: { module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', strict: true, noEmit: true, skipLibCheck: false, types: ['node'] },
      files: ['check.ts'],
    }),
  );
  const tsc = run(process.execPath, [path.join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', app], { cwd: app });
  check('TypeScript resolves the types of ai-contained and ai-contained/host', tsc.code === 0, tsc.stdout + tsc.stderr);
} catch (error) {
  failures++;
  process.stdout.write(`not ok - ${error instanceof Error ? error.message : String(error)}\n`);
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
process.stdout.write(failures === 0 ? '# package test passed\n' : `# package test: ${failures} failure(s)\n`);
process.exitCode = failures === 0 ? 0 : 1;
