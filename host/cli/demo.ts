/**
 * `npm start` → `contained demo`: builds the example images and runs the report-digest agent in a
 * worker-process sandbox against its sample reports, with the grants an operator would give it
 * (reports folder read-only, an output folder, an outbox that delivers into a local maildir-style
 * folder — no SMTP relay needed). Everything it writes goes under `./.contained/demo/`.
 */
import { cpSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import path from 'node:path';
import { createFs } from '../../capabilities/fs/index.js';
import { createOutbox, type OutboxScope } from '../../capabilities/outbox/index.js';
import { createSandbox } from '../../runtime/index.js';
import { EXAMPLES_DIR, buildExamples } from '../../sandbox-images/build-examples.js';
import { loadImage } from '../../sandbox-images/load.js';
import { imageProgram } from '../../sandbox-images/program.js';
import type { CliIo } from './args.js';
import { exitCodeFor } from './run.js';

export async function demoCommand(_argv: string[], io: CliIo): Promise<number> {
  const home = path.resolve('.contained', 'demo');
  rmSync(home, { recursive: true, force: true });
  for (const sub of ['reports', 'out', 'outbox']) mkdirSync(path.join(home, sub), { recursive: true });
  cpSync(path.join(EXAMPLES_DIR, 'report-digest', 'data', 'reports'), path.join(home, 'reports'), { recursive: true });

  io.stdout('Building the example images…\n');
  const built = await buildExamples();
  for (const b of built) io.stdout(`  ${b.name.padEnd(16)} ${b.digest}\n`);
  const image = await loadImage(built.find((b) => b.name === 'report-digest')?.file ?? '');
  const scopeOf = (binding: string): Record<string, unknown> => ({ ...(image.manifest.requests.find((r) => r.capability === binding)?.scope ?? {}) });
  const input = JSON.parse(readFileSync(path.join(EXAMPLES_DIR, 'report-digest', 'input.json'), 'utf8')) as unknown;

  io.stdout(`\nRunning report-digest (${image.digest.slice(0, 19)}…) with grants:\n`);
  io.stdout(`  reports  fs (read-only)  ${path.relative(process.cwd(), path.join(home, 'reports'))}\n`);
  io.stdout(`  out      fs              ${path.relative(process.cwd(), path.join(home, 'out'))}\n`);
  io.stdout(`  mail     outbox          ${path.relative(process.cwd(), path.join(home, 'outbox'))} (local maildir, no relay)\n\n`);
  const sandbox = createSandbox({ isolation: 'worker', workers: 1 });
  try {
    const outcome = await sandbox.run({
      program: imageProgram(image),
      input,
      subject: image.digest,
      limits: image.manifest.limits ?? {},
      capabilities: [
        createFs({ ...scopeOf('reports'), root: path.join(home, 'reports') }, {}, { name: 'reports' }),
        createFs({ ...scopeOf('out'), root: path.join(home, 'out') }, {}, { name: 'out' }),
        createOutbox({ ...scopeOf('mail'), from: 'digest@example.com' } as OutboxScope, { transport: { folder: path.join(home, 'outbox') } }, { name: 'mail' }),
      ],
      onLog: (line) => io.stdout(`  [agent ${line.level}] ${line.message}\n`),
    });
    io.stdout(`\nOutcome: ${JSON.stringify(outcome.status === 'ok' ? { status: 'ok', value: outcome.value, usage: outcome.usage } : { status: 'error', error: outcome.error })}\n`);
    const mails = readdirSync(path.join(home, 'outbox', 'new'), { withFileTypes: true }).filter((d) => d.isFile());
    for (const m of mails) io.stdout(`Email delivered to ${path.relative(process.cwd(), path.join(home, 'outbox', 'new', m.name))}\n`);
    for (const f of readdirSync(path.join(home, 'out'))) io.stdout(`Digest written to ${path.relative(process.cwd(), path.join(home, 'out', f))}\n`);
    io.stdout('\nNext: `npx contained run <your-agent.js>`; `npx contained caps docs --grant …` prints what an agent holds.\n');
    return exitCodeFor(outcome);
  } finally {
    await sandbox.close();
  }
}
