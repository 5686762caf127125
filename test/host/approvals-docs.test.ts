/**
 * docs/approvals.md, passkey-signed approvals, stays true: the config table's defaults are the
 * schema's, the challenge formula and the transcript agree with host/approvals/challenge.ts (the
 * documented clientDataJSON carries the challenge derived from the documented request id, digest
 * and verdict), and the documented assertion fits the operator protocol's schema.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { approvalChallenge, APPROVAL_CHALLENGE_CONTEXT, approvalSignatureSchema } from '../../host/approvals/challenge.js';
import { approvalsConfigSchema } from '../../host/approvals/config.js';

const DOC = readFileSync(path.resolve('docs/approvals.md'), 'utf8');
const SECTION = DOC.slice(DOC.indexOf('## Passkey-signed approvals'));

describe('docs/approvals.md: passkey-signed approvals', () => {
  it('documents every approvals key with the schema default', () => {
    const defaults = approvalsConfigSchema.parse({});
    const rows = new Map([...SECTION.matchAll(/^\| `([a-zA-Z]+)` \| ([^|]+) \|/gm)].map((m) => [m[1] as string, (m[2] as string).trim()]));
    expect(rows.get('signed')).toBe(`\`${defaults.signed}\``);
    expect(rows.get('userVerification')).toBe(`\`${defaults.userVerification}\``);
    expect(rows.get('rpName')).toBe(`\`${defaults.rpName}\``);
    expect(rows.get('registrationTimeoutMs')?.replace(/\s/g, '')).toBe(String(defaults.registrationTimeoutMs));
    for (const key of Object.keys(approvalsConfigSchema.shape)) expect(rows.has(key), key).toBe(true);
  });

  it('states the challenge as the code derives it, and the transcript\'s assertion carries it', () => {
    expect(SECTION).toContain(`"${APPROVAL_CHALLENGE_CONTEXT}\\n" + requestId + "\\n" + argsDigest + "\\n" + verdict`);
    const request = /contained audit show ([0-9a-f-]{36}) --data-dir/.exec(SECTION)?.[1] as string;
    const approval = JSON.parse(/```json\n(\{\n  "operator": "bob"[\s\S]*?\n\})\n```/.exec(SECTION)?.[1] as string) as { argsDigest: string; signature: unknown };
    const signature = approvalSignatureSchema.parse(approval.signature);
    const clientData = JSON.parse(Buffer.from(signature.assertion.response.clientDataJSON, 'base64url').toString('utf8')) as { challenge: string; origin: string };
    expect(clientData.challenge).toBe(approvalChallenge(request, approval.argsDigest, 'approve'));
    expect(clientData.origin).toBe(signature.origin);
    // The shell check prints the same challenge.
    expect(SECTION).toContain(`\n${clientData.challenge}\n\`\`\``);
  });
});
