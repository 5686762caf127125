/**
 * The platform API's shapes as zod schemas: request bodies are validated with them (routes.ts) and
 * the OpenAPI document is generated from them (openapi.ts), so the two cannot disagree. Every
 * schema a document refers to is registered in `apiSchemas` under its component name.
 */
import { z } from 'zod';
import { manifestSchema } from '../../sandbox-images/manifest.js';
import { RUN_STATUSES } from '../model.js';

export const apiSchemas = z.registry<{ id: string; description?: string }>();

const DIGEST = /^sha256:[0-9a-f]{64}$/;
/** Run ids are UUIDs; anything else cannot name a run. */
export const RUN_ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export const digestSchema = z.string().regex(DIGEST, 'must look like sha256:<64 lower-case hex digits>');

export const submitDigestSchema = z.strictObject({
  digest: digestSchema.describe('Digest of an image uploaded with POST /v1/images.'),
  input: z.unknown().optional().describe('JSON handed to the agent as `main(input, caps)` (default null).'),
  staged: z.boolean().optional().describe('Stage the run: reads run for real, every other call is recorded into its changeset, reviewed as one request when the run ends (docs/changesets.md). Default false.'),
});
apiSchemas.add(submitDigestSchema, { id: 'SubmitRunByDigest', description: 'Run an uploaded image.' });

export const submitImageSchema = z.strictObject({
  image: z.string().min(1).describe('The image archive (.tgz), base64. Kept for `contained submit`; prefer uploading once and submitting by digest.'),
  input: z.unknown().optional().describe('JSON handed to the agent as `main(input, caps)` (default null).'),
  staged: z.boolean().optional().describe('Stage the run (see SubmitRunByDigest.staged).'),
});
apiSchemas.add(submitImageSchema, { id: 'SubmitRunWithImage', description: 'Run an image sent inline (base64).' });

export const submitRunSchema = z.union([submitDigestSchema, submitImageSchema]);
apiSchemas.add(submitRunSchema, { id: 'SubmitRun', description: 'Either an uploaded image by digest, or an inline base64 image.' });

apiSchemas.add(manifestSchema, { id: 'Manifest', description: 'The image manifest (`manifest.json`), see docs/images.md.' });

export const imageUploadedSchema = z.strictObject({
  digest: digestSchema,
  manifest: manifestSchema,
});
apiSchemas.add(imageUploadedSchema, { id: 'ImageUploaded', description: 'The stored image: its digest and its manifest.' });

export const runAcceptedSchema = z.strictObject({
  runId: z.string().regex(RUN_ID),
  digest: digestSchema,
  status: z.enum(['queued', 'running']).describe('`queued` when the run waits for a free slot.'),
});
apiSchemas.add(runAcceptedSchema, { id: 'RunAccepted', description: 'A run was accepted; follow it with GET /v1/runs/{id} or its event stream.' });

/**
 * A code from the registry (docs/errors.md). Documented as a pattern, not an enum, so adding a
 * code elsewhere does not change the API document; the registry is the list.
 */
const errorCodeSchema = z.string().regex(/^[A-Z][A-Z0-9_]*$/).describe('A stable code from docs/errors.md.');

export const logLineSchema = z.strictObject({
  level: z.enum(['log', 'info', 'warn', 'error', 'debug']),
  message: z.string(),
  atMs: z.number().describe('Milliseconds since the run started (pauses excluded).'),
});
apiSchemas.add(logLineSchema, { id: 'LogLine' });

const usageSchema = z.strictObject({
  cpuMs: z.number(),
  wallMs: z.number(),
  heapBytes: z.number(),
  calls: z.number().int(),
});

export const outcomeSchema = z.discriminatedUnion('status', [
  z.strictObject({ status: z.literal('ok'), value: z.unknown().describe('What `main` returned (JSON).'), logs: z.array(logLineSchema), usage: usageSchema }),
  z.strictObject({
    status: z.literal('error'),
    error: z.strictObject({ code: errorCodeSchema, message: z.string(), stack: z.string().optional() }),
    logs: z.array(logLineSchema),
    usage: usageSchema,
  }),
]);
apiSchemas.add(outcomeSchema, { id: 'RunOutcome', description: 'How a run ended: its value or its error, its logs and usage.' });

export const runSchema = z.strictObject({
  id: z.string(),
  subject: z.string().optional().describe('The image digest.'),
  imageName: z.string().optional(),
  status: z.enum(RUN_STATUSES),
  input: z.unknown().describe('The run input (JSON).'),
  createdAt: z.number().int().describe('Epoch ms.'),
  endedAt: z.number().int().optional(),
  submittedBy: z.string().optional(),
  sensitiveSources: z.array(z.string()).optional().describe('The sensitive sources the run read (the data-flow rule: docs/data-flow.md), first read first; absent: none. Its value and logs may carry their data.'),
  hostId: z.string().optional().describe('The host that runs it (several hosts on one PostgreSQL store: a run lives and ends on the host that started it).'),
  outcome: outcomeSchema.optional().describe('Present once the run has ended.'),
});
apiSchemas.add(runSchema, { id: 'Run', description: 'A run: status, and its outcome once it has ended.' });

export const errorSchema = z.strictObject({
  error: z.strictObject({
    code: errorCodeSchema,
    message: z.string(),
    data: z.record(z.string(), z.unknown()).optional().describe('Structured detail: `path`/`issues` for invalid fields, `limitBytes`, `retryAfterSeconds`…'),
  }),
});
apiSchemas.add(errorSchema, { id: 'Error', description: 'Every error answer.' });

export const runQuerySchema = z.strictObject({
  waitMs: z.coerce.number().int().min(0).max(120_000).optional().describe('Long-poll: wait up to this many ms for a running run to end.'),
});
