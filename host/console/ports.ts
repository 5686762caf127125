/**
 * The ports of the web console: the few host services it uses, and nothing else. startHost
 * (host/host.ts) hands them over; the console never sees the host. Decisions are not here: the
 * page makes them over the operator channel, like every other client.
 */
import type { CapabilityInstance } from '../../capabilities/sdk/index.js';
import type { RequestManager } from '../gate/requests.js';
import type { GrantService } from '../grant-service.js';
import type { Notifier } from '../notify/index.js';
import type { Store } from '../store/store.js';
import type { McpToolsPort } from './mcp-tools.js';
import type { Oversight } from './oversight.js';
import type { PasskeyPort } from './passkeys.js';
import type { RequestRecord } from '../model.js';
import type { AuditConfig } from '../audit/config.js';
import type { SessionRecords } from './sessions.js';

/** What the console uses of the host, and nothing else. */
export interface ConsolePorts {
  /** A session's token is read again on every request: a revoked token ends its sessions at once. */
  tokens: Pick<Store, 'findTokenByHash'>;
  /** Console sessions and login codes, kept in the store (a restarted host, or another host of a fleet, knows them). */
  sessions: SessionRecords;
  /** A run's requests, as operators see them (the run page). */
  requests: Pick<RequestManager, 'viewsForRun'>;
  /** Adding and narrowing grants: the grant service (the rules, the store, the event to operators). */
  grants: Pick<GrantService, 'add' | 'narrow'>;
  /** The capabilities the host offers, described for the grant form. */
  capabilities: ReadonlyMap<string, Pick<CapabilityInstance, 'describe'>>;
  /** Trust figures and the audit log (either absent: those views answer NOT_FOUND). */
  oversight: Oversight;
  /** The host's data folder (the audit log's verify key). */
  dataDir: string;
  /** The config's audit keys: a fleet's shared `keyFile`, other hosts' `publicKeyFiles` (verification of the one chain). */
  auditKeys?: Pick<AuditConfig, 'keyFile' | 'publicKeyFiles'>;
  /** Notification targets and deliveries (the Notifications page; absent: NOT_FOUND). */
  notify?: Pick<Notifier, 'status'>;
  /** Passkeys and signed approvals, with a request lookup for the approval options (absent: those routes answer NOT_FOUND). */
  passkeys?: PasskeyPort & { request(id: string): Promise<RequestRecord | undefined> };
  /** Tool changes of the host's mcp capabilities, and accepting them (the MCP tools page; absent: NOT_FOUND). */
  mcpTools?: McpToolsPort;
}
