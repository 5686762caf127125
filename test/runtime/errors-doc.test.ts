import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { ERRORS_DOC_PATH, renderErrorsDoc } from '../../runtime/errors-doc.js';
import { AUDIENCES, ContainedError, ERROR_CODES, ERRORS, httpStatus, toAgentError } from '../../runtime/errors.js';

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

  it('each code carries its metadata: a status (or none), who is handed it, its doc', () => {
    for (const [code, spec] of Object.entries(ERRORS)) {
      expect(spec.status === null || (Number.isInteger(spec.status) && spec.status >= 400 && spec.status <= 599), code).toBe(true);
      expect(spec.audience.length, code).toBeGreaterThan(0);
      expect(new Set(spec.audience).size, code).toBe(spec.audience.length);
      for (const who of spec.audience) expect(Object.keys(AUDIENCES), code).toContain(who);
      expect(ERROR_CODES[code as keyof typeof ERRORS]).toBe(spec.doc);
      // The status lives in `status`, not in prose that could say something else.
      expect(spec.doc, code).not.toMatch(/\(HTTP \d{3}\)/);
      if ('reserved' in spec) expect(String(spec.reserved).length, code).toBeGreaterThan(10);
    }
    expect(httpStatus('NOT_FOUND')).toBe(404);
    expect(httpStatus('CPU_LIMIT')).toBe(500);
  });

  it('the split of refusals: a role too low is FORBIDDEN (callers, operators); a refused call is CAPABILITY_DENIED (agents)', () => {
    expect(ERRORS.FORBIDDEN.audience).not.toContain('agent');
    expect(ERRORS.CAPABILITY_DENIED.audience).toContain('agent');
    expect(ERRORS.FORBIDDEN.status).toBe(403);
    expect(ERRORS.CAPABILITY_DENIED.status).toBe(403);
  });

  it('hands agents only code and message; anything unknown becomes INTERNAL', () => {
    expect(toAgentError(new ContainedError('NOT_FOUND', 'no such run'))).toEqual({ code: 'NOT_FOUND', message: 'no such run' });
    const leaked = toAgentError(new Error('ENOENT: /etc/secret/host/path'));
    expect(leaked.code).toBe('INTERNAL');
    expect(leaked.message).not.toContain('/etc');
  });
});
