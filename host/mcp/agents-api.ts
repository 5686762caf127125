/**
 * Agent identities over the HTTP API, for admins (the same as `contained agent …`; docs/mcp.md):
 * `GET /v1/agents` lists them (never a hash), `POST /v1/agents` `{ name, subject }` creates one and
 * answers its token once (201), `DELETE /v1/agents/{name}` revokes the active agent of that name
 * (or the agent with that id). An operator token of the admin role is required (401/403 otherwise),
 * like managing operator tokens; agent tokens are never accepted here.
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { createAgent } from '../agents.js';
import { authenticate } from '../api/auth.js';
import { readJson } from '../api/body.js';
import type { HttpRoute } from '../api/http-route.js';
import { sendJson } from '../api/respond.js';
import type { AgentRecord } from '../store/agents.js';
import type { Store } from '../store/store.js';
import type { TokenVerifier } from '../tokens.js';

export const AGENTS_PATH = '/v1/agents';
const MAX_BODY_BYTES = 16 * 1024;

export const newAgentSchema = z.strictObject({
  name: z.string().min(1).max(64),
  subject: z.string().min(1).max(300),
});

export interface AgentApiPorts {
  store: Pick<Store, 'insertAgent' | 'listAgents' | 'revokeAgent' | 'findAgentByHash'>;
  /** Operator tokens (the admin role is required). */
  operators: TokenVerifier;
  now?: () => number;
}

function publicAgent(record: AgentRecord): Omit<AgentRecord, 'hash'> {
  const { hash: _hash, ...rest } = record;
  return rest;
}

export function agentRoutes(ports: AgentApiPorts): HttpRoute[] {
  const now = ports.now ?? Date.now;
  return [
    {
      method: 'GET',
      path: AGENTS_PATH,
      async handler({ req, res }) {
        await authenticate(req, ports.operators, ['admin']);
        sendJson(res, 200, { agents: (await ports.store.listAgents()).map(publicAgent) });
      },
    },
    {
      method: 'POST',
      path: AGENTS_PATH,
      async handler({ req, res }) {
        const admin = await authenticate(req, ports.operators, ['admin']);
        const body = await readJson(req, newAgentSchema, MAX_BODY_BYTES);
        const { token, record } = await createAgent({ ...body, createdBy: admin.name }, ports.store, { now });
        sendJson(res, 201, { ...publicAgent(record), token }, { 'cache-control': 'no-store' });
      },
    },
    {
      method: 'DELETE',
      path: `${AGENTS_PATH}/:name`,
      name: `${AGENTS_PATH}/:name`,
      async handler({ req, res, params }) {
        await authenticate(req, ports.operators, ['admin']);
        const which = params.name ?? '';
        const all = await ports.store.listAgents();
        const record = all.find((a) => a.id === which) ?? all.find((a) => a.name === which && a.revokedAt === undefined);
        if (!record) throw new ContainedError('NOT_FOUND', `no active agent named ${which.slice(0, 80)} (and no agent with that id)`);
        const revoked = await ports.store.revokeAgent(record.id, now());
        sendJson(res, 200, publicAgent(revoked ?? record));
      },
    },
  ];
}
