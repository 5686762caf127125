/**
 * Who may reach which run through the platform API: pure predicates, deny on anything they do not
 * recognise. A platform client is its token name (`RunRecord.submittedBy` is the name of the token
 * that submitted the run); it reads, follows and cancels its own runs only. Another client's run is
 * `NOT_FOUND` with the very message of a run that does not exist, so a client cannot even learn
 * that a run id is in use. An admin reaches every run; a platform token named in
 * `http.crossClientReaders` reads and follows every run but cancels only its own (`FORBIDDEN`,
 * since it can see the run anyway). A run with no `submittedBy` (a library call) is an admin's.
 */
import { ContainedError } from '../../runtime/errors.js';
import type { Operator, RunRecord } from '../model.js';
import type { ImageClients } from '../runs/image-store.js';

export type RunIntent = 'read' | 'cancel';

export type AccessCheck = { ok: true } | { ok: false; code: 'NOT_FOUND' | 'FORBIDDEN'; message: string };

export interface AccessPolicy {
  /** Platform token names that may read every client's runs. */
  crossClientReaders: ReadonlySet<string>;
}

/** The answer for a run id that names no run the caller may see (also for malformed ids). */
export function noSuchRun(id: string): ContainedError {
  return new ContainedError('NOT_FOUND', `no run ${id.slice(0, 80)}`);
}

/** True when `caller` submitted `run` (same token name, platform role; an absent name is nobody's). */
export function ownsRun(caller: Operator, run: Pick<RunRecord, 'submittedBy'>): boolean {
  return caller.role === 'platform' && typeof run.submittedBy === 'string' && run.submittedBy.length > 0 && run.submittedBy === caller.name;
}

export function checkRunAccess(caller: Operator, run: Pick<RunRecord, 'id' | 'submittedBy'>, intent: RunIntent, policy: AccessPolicy): AccessCheck {
  if (caller.role === 'admin') return { ok: true };
  if (caller.role !== 'platform') return { ok: false, code: 'NOT_FOUND', message: noSuchRun(run.id).message };
  if (ownsRun(caller, run)) return { ok: true };
  if (!policy.crossClientReaders.has(caller.name)) return { ok: false, code: 'NOT_FOUND', message: noSuchRun(run.id).message };
  if (intent === 'read') return { ok: true };
  return { ok: false, code: 'FORBIDDEN', message: `${caller.name} may read other clients' runs (http.crossClientReaders) but cancel only its own` };
}

/** Entries the image-client cache holds before it starts again (a bound on memory, not a rule). */
const KNOWN_UPLOADS_MAX = 10_000;

/**
 * `clients` with the answers "this client uploaded this image" remembered, so a run by digest does
 * not touch the file system each time. Only yes is remembered, and a yes never turns into a no: the
 * markers are only ever added (an upload cannot be undone), so this answers exactly as `clients`.
 */
export function rememberingUploads(clients: ImageClients): ImageClients {
  const known = new Set<string>();
  const remember = (key: string): void => {
    if (known.size >= KNOWN_UPLOADS_MAX) known.clear();
    known.add(key);
  };
  const keyOf = (digest: string, client: string): string => JSON.stringify([digest, client]);
  return {
    async add(digest, client) {
      await clients.add(digest, client);
      remember(keyOf(digest, client));
    },
    async has(digest, client) {
      const key = keyOf(digest, client);
      if (known.has(key)) return true;
      const yes = await clients.has(digest, client);
      if (yes) remember(key);
      return yes;
    },
  };
}
