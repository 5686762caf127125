import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS_DOC_PATH, renderErrorsDoc } from '../../runtime/errors-doc.js';
import { ContainedError, ERROR_CODES, toAgentError } from '../../runtime/errors.js';

describe('error registry', () => {
  it('docs/errors.md is generated from the registry (run npm run docs:errors)', () => {
    expect(readFileSync(ERRORS_DOC_PATH, 'utf8')).toBe(renderErrorsDoc());
  });

  it('codes are SCREAMING_SNAKE and each has a one-line doc', () => {
    for (const [code, doc] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^[A-Z][A-Z0-9_]*$/);
      expect(doc.length).toBeGreaterThan(10);
      expect(doc).not.toContain('\n');
    }
  });

  it('hands agents only code and message; anything unknown becomes INTERNAL', () => {
    expect(toAgentError(new ContainedError('NOT_FOUND', 'no such run'))).toEqual({ code: 'NOT_FOUND', message: 'no such run' });
    const leaked = toAgentError(new Error('ENOENT: /etc/secret/host/path'));
    expect(leaked.code).toBe('INTERNAL');
    expect(leaked.message).not.toContain('/etc');
  });
});
