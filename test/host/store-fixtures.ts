/** Records for the store tests: a valid grant, request, run and token with overrides. */
import type { Grant, RequestRecord, RunRecord, TokenRecord } from '../../host/model.js';

export const DIGEST = `sha256:${'ab'.repeat(32)}`;
export const OTHER_DIGEST = `sha256:${'cd'.repeat(32)}`;
export const KEY = `sha256:${'12'.repeat(32)}`;

export function grant(over: Partial<Grant> = {}): Grant {
  return {
    id: 'g1',
    subject: { digest: DIGEST },
    capability: 'reports',
    methods: ['read', 'list'],
    mode: 'contained',
    approvals: 1,
    createdBy: 'alice',
    reason: 'reads the weekly reports',
    createdAt: 1_000,
    ...over,
  };
}

export function request(over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    id: 'r1',
    kind: 'recommendation',
    runId: 'run1',
    subject: DIGEST,
    capability: 'payments',
    definition: 'payments',
    method: 'refund',
    args: { orderId: 'o-1', amountCents: 500 },
    reason: 'customer asked',
    risk: { readOnly: false, destructive: false, reversible: false, openWorld: true, financial: true },
    why: 'assisted mode (grant g9)',
    grantId: 'g9',
    approvalsRequired: 2,
    approvals: [],
    status: 'pending',
    createdAt: 1_000,
    expiresAt: 1_000_000,
    ...over,
  };
}

export function run(over: Partial<RunRecord> = {}): RunRecord {
  return { id: 'run1', subject: DIGEST, imageName: 'refund-desk', status: 'running', input: { n: 1 }, createdAt: 1_000, ...over };
}

export function token(over: Partial<TokenRecord> = {}): TokenRecord {
  return { id: 'tok1', name: 'alice', role: 'approver', hash: 'a'.repeat(64), createdAt: 1_000, createdBy: 'root', ...over };
}
