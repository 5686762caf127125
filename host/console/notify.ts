/**
 * The console's view of notifications (`GET /console/api/notify`, the Notifications page): each
 * webhook and the email target with its counts (delivered, pending, failing, given up) and last
 * error, and the latest deliveries. Admins only: targets say where the host sends what it knows.
 * A webhook shows only its URL's origin (a Slack or Teams URL's path is a credential); secrets
 * never leave the host.
 *
 * Fails: FORBIDDEN below admin, NOT_FOUND when the host has no notifier, INVALID_ARGUMENT for a bad
 * `limit` or `target` filter.
 */
import { z } from 'zod';
import { ContainedError } from '../../runtime/errors.js';
import { validate } from '../api/body.js';
import { type Operator, roleAtLeast } from '../model.js';
import type { Notifier, NotifyStatus } from '../notify/index.js';

/** Most deliveries one answer lists. */
export const MAX_NOTIFY_DELIVERIES = 500;

const querySchema = z.strictObject({
  limit: z.coerce.number().int().min(1).max(MAX_NOTIFY_DELIVERIES).optional(),
  target: z.string().regex(/^(webhook:[a-z0-9][a-z0-9_-]{0,62}|email)$/).optional(),
});

export async function notifyStatus(notify: Pick<Notifier, 'status'> | undefined, operator: Operator, params: URLSearchParams): Promise<NotifyStatus> {
  if (!roleAtLeast(operator.role, 'admin')) throw new ContainedError('FORBIDDEN', `role ${operator.role} may not see notification targets (admin only)`);
  if (!notify) throw new ContainedError('NOT_FOUND', 'this host has no notifications');
  const query = validate(querySchema, Object.fromEntries([...params].filter(([, v]) => v !== '')), 'query');
  return notify.status({ limit: query.limit ?? 100, ...(query.target !== undefined ? { target: query.target } : {}) });
}
