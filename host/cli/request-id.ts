/**
 * Request ids on the command line: a full id, or an unambiguous prefix of a pending request's id
 * (as the interactive `contained operator` accepts). `approve`/`deny` act without a human looking
 * at a list, so a prefix must be at least `MIN_PREFIX_CHARS` long and name exactly one pending
 * request; several is AMBIGUOUS_ID listing the candidates (`data.candidates`), and nothing is
 * decided. A prefix that names no pending request is passed on as given: the host answers
 * NOT_FOUND or ALREADY_RESOLVED for it.
 */
import { ContainedError } from '../../runtime/errors.js';
import type { WireRequestView } from '../operator/protocol.js';

/** Shortest prefix accepted in place of a full id. */
export const MIN_PREFIX_CHARS = 4;
/** Candidates named in an AMBIGUOUS_ID message. */
const MAX_LISTED = 10;

export function resolveRequestId(pending: ReadonlyMap<string, WireRequestView>, id: string): string {
  if (pending.has(id)) return id;
  const matches = [...pending.values()].filter((r) => r.id.startsWith(id));
  if (matches.length === 0) return id;
  if (id.length < MIN_PREFIX_CHARS) {
    throw new ContainedError('USAGE', `"${id}" is too short to name a request: give at least ${MIN_PREFIX_CHARS} characters of its id`);
  }
  const [only] = matches;
  if (matches.length === 1 && only) return only.id;
  const listed = matches
    .sort((a, b) => a.createdAt - b.createdAt)
    .slice(0, MAX_LISTED)
    .map((r) => `${r.id} (${r.method ? `${r.capability}.${r.method}` : r.capability})`);
  const more = matches.length > MAX_LISTED ? ` and ${matches.length - MAX_LISTED} more` : '';
  throw new ContainedError('AMBIGUOUS_ID', `"${id}" matches ${matches.length} pending requests: ${listed.join(', ')}${more}; give more of the id`, {
    data: { prefix: id, candidates: matches.map((r) => r.id) },
  });
}
