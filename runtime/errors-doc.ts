/**
 * Renders docs/errors.md from the error registry: each code with its HTTP status, who is handed
 * it and its doc line. `npm run docs:errors` writes it; the test test/runtime/errors-doc.test.ts
 * fails when the committed file and the registry disagree.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { AUDIENCES, ERRORS, type ErrorSpec } from './errors.js';

const cell = (text: string): string => text.replace(/\|/g, '\\|');

function meaning(spec: ErrorSpec): string {
  return spec.reserved === undefined ? spec.doc : `${spec.doc} *Reserved: ${spec.reserved}*`;
}

export function renderErrorsDoc(): string {
  const lines = [
    '# Error codes',
    '',
    'Every error an agent, a caller or an operator sees carries one of these stable codes (generated from `runtime/errors.ts` by `npm run docs:errors`; a test keeps the two in sync).',
    'Inside a sandbox, a failed capability call rejects with an `Error` whose `code` is one of these; a run ends with `{ status: "error", error: { code, message } }`.',
    '',
    'Each code carries its metadata in that one registry:',
    '',
    '- **HTTP**: the status of an HTTP answer (platform API, console) carrying the code, derived from the code alone; `—` means the code is never an HTTP error answer (a run outcome, a capability call\'s rejection, a start-up or client-side failure).',
    '- **handed to**: who receives an error with the code (anyone may read it later in a run record, a request or the audit log):',
    ...Object.entries(AUDIENCES).map(([name, doc]) => `  - \`${name}\`: ${doc}`),
    '',
    'Refusals split by who is refused: a caller or an operator whose role is too low is `FORBIDDEN` on every channel (HTTP API, console, operator WebSocket, CLI, the grant rules); an agent whose capability call the gate refuses is `CAPABILITY_DENIED`. Agents never get `FORBIDDEN`.',
    '',
    '| code | HTTP | handed to | meaning |',
    '|---|---|---|---|',
    ...Object.entries(ERRORS).map(([code, spec]: [string, ErrorSpec]) => `| \`${code}\` | ${spec.status ?? '—'} | ${spec.audience.join(', ')} | ${cell(meaning(spec))} |`),
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
