/** Records for the store tests: a valid grant, request, run, token, agent, host, session and one-time secret with overrides. */
import type { Grant, Operator, RequestRecord, RunRecord, TokenRecord } from '../../host/model.js';
import type { AgentRecord } from '../../host/store/agents.js';
import type { HostRecord, OneTimeSecret, SessionRecord } from '../../host/store/store.js';

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

export function agent(over: Partial<AgentRecord> = {}): AgentRecord {
  return { id: 'agt1', name: 'support-bot', subject: DIGEST, hash: 'e'.repeat(64), createdAt: 1_000, createdBy: 'root', ...over };
}

export function host(over: Partial<HostRecord> = {}): HostRecord {
  return { id: 'hst1', hostname: 'box-1', pid: 4242, startedAt: 1_000, heartbeatAt: 1_000, ...over };
}

export const OPERATOR: Operator = { tokenId: 'tok1', name: 'alice', role: 'approver' };

export function session(over: Partial<SessionRecord> = {}): SessionRecord {
  return { key: '1'.repeat(64), operator: OPERATOR, tokenHash: 'a'.repeat(64), csrf: 'csrf-1', createdAt: 1_000, lastSeenAt: 1_000, expiresAt: 100_000, ...over };
}

export function secret(over: Partial<OneTimeSecret> = {}): OneTimeSecret {
  return { kind: 'ticket', hash: '2'.repeat(64), operator: OPERATOR, expiresAt: 10_000, ...over };
}
