/**
 * Notifications, as the composition root opens them: the config's targets with their secrets
 * resolved (before anything else is opened, so a bad reference fails start-up cleanly), then the
 * outbox (the store file's, or a fleet's shared one in PostgreSQL) and the notifier around it. docs/approvals.md describes the whole.
 */
import type { Logger } from 'pino';
import { openNotifyOutbox } from '../store/notify-outbox.js';
import { openPgNotifyOutbox } from '../store/pg/notify-outbox.js';
import type { NotifyConfig } from './config.js';
import { createNotifier, type Notifier } from './notifier.js';
import { loadNotifySecrets, type NotifyTarget, resolveTargets } from './targets.js';

export type { Notifier, NotifyStatus, NotifyTargetStatus } from './notifier.js';
export { verifyWebhook } from './signing.js';

/** The configured targets; INVALID_ARGUMENT (with `data.path`) for a bad secret reference or URL. */
export function notifyTargets(config: NotifyConfig): NotifyTarget[] {
  return resolveTargets(config, loadNotifySecrets(config.secrets));
}

/**
 * The notifier over its outbox: the store file's (`storeFile`), or — `postgres`, a fleet's
 * database — the one outbox every host of the fleet shares (host/store/pg/notify-outbox.ts).
 */
export async function openNotifier(options: { config: NotifyConfig; targets: readonly NotifyTarget[]; storeFile: string; postgres?: string | undefined; logger?: Logger; now?: () => number }): Promise<Notifier> {
  const logger = options.logger?.child({ component: 'notify' });
  const outbox = options.postgres === undefined ? openNotifyOutbox(options.storeFile) : openPgNotifyOutbox(options.postgres, { logger });
  try {
    return await createNotifier({ config: options.config, targets: options.targets, outbox, logger, ...(options.now ? { now: options.now } : {}) });
  } catch (error) {
    await outbox.close();
    throw error;
  }
}
