/**
 * Renders docs/errors.md from the error registry. `npm run docs:errors` writes it; the test
 * test/runtime/errors-doc.test.ts fails when the committed file and the registry disagree.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { ERROR_CODES } from './errors.js';

export function renderErrorsDoc(): string {
  const lines = [
    '# Error codes',
    '',
    'Every error an agent, a caller or an operator sees carries one of these stable codes (generated from `runtime/errors.ts` by `npm run docs:errors`; a test keeps the two in sync).',
    'Inside a sandbox, a failed capability call rejects with an `Error` whose `code` is one of these; a run ends with `{ status: "error", error: { code, message } }`.',
    '',
    '| code | meaning |',
    '|---|---|',
    ...Object.entries(ERROR_CODES).map(([code, doc]) => `| \`${code}\` | ${doc.replace(/\|/g, '\\|')} |`),
    '',
  ];
  return lines.join('\n');
}

export const ERRORS_DOC_PATH = fileURLToPath(new URL('../docs/errors.md', import.meta.url));

if (process.argv.includes('--write')) {
  writeFileSync(ERRORS_DOC_PATH, renderErrorsDoc());
  process.stdout.write(`wrote ${ERRORS_DOC_PATH}\n`);
} else if (process.argv[1] === fileURLToPath(import.meta.url)) {
  process.stdout.write(readFileSync(ERRORS_DOC_PATH, 'utf8') === renderErrorsDoc() ? 'docs/errors.md is current\n' : 'docs/errors.md is stale\n');
}
