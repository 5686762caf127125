/**
 * Notifications, as the composition root opens them: the config's targets with their secrets
 * resolved (before anything else is opened, so a bad reference fails start-up cleanly), then the
 * outbox on the store file and the notifier around it. docs/approvals.md describes the whole.
 */
import type { Logger } from 'pino';
import { openNotifyOutbox } from '../store/notify-outbox.js';
import type { NotifyConfig } from './config.js';
import { createNotifier, type Notifier } from './notifier.js';
import { loadNotifySecrets, type NotifyTarget, resolveTargets } from './targets.js';

export type { Notifier, NotifyStatus, NotifyTargetStatus } from './notifier.js';
export { verifyWebhook } from './signing.js';

/** The configured targets; INVALID_ARGUMENT (with `data.path`) for a bad secret reference or URL. */
export function notifyTargets(config: NotifyConfig): NotifyTarget[] {
  return resolveTargets(config, loadNotifySecrets(config.secrets));
}

export function openNotifier(options: { config: NotifyConfig; targets: readonly NotifyTarget[]; storeFile: string; logger?: Logger; now?: () => number }): Notifier {
  const outbox = openNotifyOutbox(options.storeFile);
  try {
    return createNotifier({ config: options.config, targets: options.targets, outbox, logger: options.logger?.child({ component: 'notify' }), ...(options.now ? { now: options.now } : {}) });
  } catch (error) {
    outbox.close();
    throw error;
  }
}
