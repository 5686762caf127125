/**
 * `import … from 'ai-contained/host'`: the embeddable host — grants and modes, the policy gate, requests
 * for operators, the audit log and trust ledger, the HTTP run API and the web console. A separate entry
 * from `ai-contained` because it loads the SQLite store, ws, the console and the metrics registry, which
 * a library user running sandboxes does not need. Explicit named exports only.
 */
// First, before anything loads isolated-vm: refuse a Node started without --no-node-snapshot.
import './preflight.js';

export { startHost } from './host/host.js';
export type { Host, HostOptions } from './host/host.js';
export { loadHostConfig, openCapabilities, openCapability, parseHostConfig } from './host/config.js';
export type { HostConfig, OpenCapabilities, OpenCapability } from './host/config.js';
export { createHostLogger, hostLoggerOptions, LOG_REDACT_PATHS } from './host/logger.js';
export { createToken } from './host/tokens.js';
export { verifyWebhook } from './host/notify/signing.js';
export type { VerifyResult as WebhookVerifyResult } from './host/notify/signing.js';
