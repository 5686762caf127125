/**
 * Shared set-up for the MCP server tests (mcp-*.test.ts): a host config file in a temp folder
 * with one fs capability (`notes`), a store seeded with operator tokens (alice, bob: approvers),
 * an agent (`tester`) and grants to its subject — `notes.read` contained, `notes.write` (destructive:
 * two approvals) and `notes.append` assisted — and helpers for operators over the real WebSocket.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createAgent } from '../../host/agents.js';
import { newGrantId } from '../../host/grants.js';
import type { Grant } from '../../host/model.js';
import type { RequestView } from '../../host/operator/backend.js';
import { OperatorClient, type OperatorEvent } from '../../host/operator/client.js';
import { defaultStorePath, openSqliteStore } from '../../host/store/sqlite-store.js';
import { createToken } from '../../host/tokens.js';

export const AGENT_SUBJECT = `sha256:${'a7'.repeat(32)}`;

export interface McpFixture {
  dir: string;
  configFile: string;
  /** The agent `tester`'s token. */
  agentToken: string;
  /** Operator tokens by name. */
  operators: Record<string, string>;
  close(): void;
}

export async function mcpFixture(mcp: Record<string, unknown> = {}, extra: Record<string, unknown> = {}): Promise<McpFixture> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'contained-mcp-'));
  const notes = path.join(dir, 'notes');
  mkdirSync(notes, { recursive: true });
  writeFileSync(path.join(notes, 'a.txt'), 'hello from notes');
  const configFile = path.join(dir, 'contained.config.json');
  writeFileSync(
    configFile,
    JSON.stringify({ dataDir: path.join(dir, 'data'), listen: { host: '127.0.0.1', port: 0 }, capabilities: { notes: { kind: 'fs', scope: { root: notes } } }, requestTimeoutMs: 60_000, mcp, ...extra }),
  );
  mkdirSync(path.join(dir, 'data'), { recursive: true });
  const store = await openSqliteStore(defaultStorePath(path.join(dir, 'data')));
  const operators: Record<string, string> = {};
  let agentToken: string;
  try {
    for (const name of ['alice', 'bob']) operators[name] = (await createToken({ name, role: 'approver', createdBy: 'test' }, store)).token;
    agentToken = (await createAgent({ name: 'tester', subject: AGENT_SUBJECT, createdBy: 'test' }, store)).token;
    const grant = (fields: Pick<Grant, 'methods' | 'mode'> & Partial<Grant>): Grant => ({
      id: newGrantId(),
      subject: { digest: AGENT_SUBJECT },
      capability: 'notes',
      approvals: 1,
      createdBy: 'test',
      reason: 'mcp test grant',
      createdAt: Date.now(),
      ...fields,
    });
    await store.insertGrant(grant({ methods: ['read', 'list'], mode: 'contained' }));
    await store.insertGrant(grant({ methods: ['write'], mode: 'assisted', approvals: 2 }));
    await store.insertGrant(grant({ methods: ['append'], mode: 'assisted' }));
  } finally {
    await store.close();
  }
  return { dir, configFile, agentToken, operators, close: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Resolve with the next pending request this operator sees (created), optionally filtered. */
export function nextCreated(op: OperatorClient, filter: (r: RequestView) => boolean = () => true): Promise<RequestView> {
  return new Promise((resolve) => {
    const off = op.onEvent((event: OperatorEvent) => {
      if (event.type === 'created' && filter(event.request as RequestView)) {
        off();
        resolve(event.request as RequestView);
      }
    });
  });
}

export function operator(wsUrl: string, token: string): Promise<OperatorClient> {
  return OperatorClient.connect({ url: wsUrl, token });
}

/** Agent code used by the tests. */
export const CODE = {
  read: "export default async function main(input, caps) { return { text: await caps.notes.read('a.txt'), input }; }",
  write: "export default async function main(input, caps) { await caps.notes.write({ path: 'b.txt', content: 'written' }, { reason: 'save the summary' }); return 'written'; }",
  append: "export default async function main(input, caps) { return caps.notes.append({ path: 'log.txt', content: 'line\\n' }, { reason: 'keep a log' }); }",
  fail: "export default async function main() { throw new Error('boom'); }",
  logs: "export default async function main(input) { console.log('hi', input.n); return input.n * 2; }",
};
