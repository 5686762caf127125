/**
 * The image manifest (`manifest.json`, `"format": 1`): what the agent is, which module runs, and
 * which capabilities it asks for, with the scope it wants, the methods and a reason a person can
 * read before granting anything.
 *
 * Defends against: manifests with unknown keys (strict objects everywhere), non-JSON scopes,
 * binding names that are not plain identifiers, an `entry` that is not a module of the image.
 *
 * How it fails: `parseManifest` throws IMAGE_MANIFEST_INVALID (with `data.issues`) for bytes that
 * are not UTF-8 JSON matching the schema; `checkEntry` throws IMAGE_ENTRY_MISSING.
 */
import { isUtf8 } from 'node:buffer';
import path from 'node:path';
import { z } from 'zod';
import { ContainedError } from '../runtime/errors.js';
import { DEFAULT_IMAGE_LIMITS } from './limits.js';
import { MANIFEST_PATH, MODULE_EXTENSIONS, describePath, normaliseEntryPath } from './paths.js';

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;
const jsonObject = z.record(z.string(), z.json());
const positiveInt = (max: number) => z.number().int().positive().max(max);

/** One capability the agent asks for. */
export const capabilityRequestSchema = z.strictObject({
  /** Binding name the agent uses: `caps.<capability>.<method>(…)`. */
  capability: z.string().regex(IDENTIFIER, 'must be a JavaScript identifier').max(64),
  /** Capability definition name (`fs`, `sql`, `outbox`, `payments`…). */
  kind: z.string().regex(/^[a-z][a-z0-9_-]*$/, 'must be a lower-case definition name').max(64),
  /** The scope the agent wants (the operator may grant a narrower one). */
  scope: jsonObject,
  /** Methods of the definition the agent will call. */
  methods: z
    .array(z.string().regex(IDENTIFIER, 'must be a method name').max(64))
    .min(1)
    .max(64)
    .refine((m) => new Set(m).size === m.length, 'methods must be unique'),
  /** Why the agent needs it, for the person deciding. */
  why: z.string().trim().min(1).max(2000),
});

/** Default run limits the image asks for; the same names and units as the runtime's limits. */
export const manifestLimitsSchema = z.strictObject({
  memoryMb: z.number().int().min(8).max(4096).optional(),
  cpuMs: positiveInt(3_600_000).optional(),
  wallMs: positiveInt(86_400_000).optional(),
  maxLogBytes: positiveInt(64 * 1024 * 1024).optional(),
  maxOutputBytes: positiveInt(256 * 1024 * 1024).optional(),
  maxCalls: positiveInt(10_000_000).optional(),
});

const entryPath = z
  .string()
  .refine((p) => {
    const verdict = normaliseEntryPath(p, false, DEFAULT_IMAGE_LIMITS);
    return verdict.ok && verdict.value === p;
  }, 'must be a relative path inside the image, without "./", ".." or odd characters')
  .refine((p) => MODULE_EXTENSIONS.includes(path.posix.extname(p)), 'must be a .js or .mjs module');

export const manifestSchema = z.strictObject({
  format: z.literal(1),
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]*$/, 'must be lower-case letters, digits, ".", "_" or "-"').max(64),
  version: z.string().regex(/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/, 'must be a semantic version').max(64),
  description: z.string().max(2000),
  entry: entryPath,
  requests: z
    .array(capabilityRequestSchema)
    .max(64)
    .refine((r) => new Set(r.map((x) => x.capability)).size === r.length, 'capability binding names must be unique'),
  limits: manifestLimitsSchema.optional(),
  /** JSON Schema of the run input (not interpreted here). */
  input: jsonObject.optional(),
});

export type Manifest = z.infer<typeof manifestSchema>;
/** A capability an image asks for in its manifest (not the runtime's `CapabilityRequest`, made by `requestCapability`). */
export type ManifestCapabilityRequest = z.infer<typeof capabilityRequestSchema>;
export type ManifestLimits = z.infer<typeof manifestLimitsSchema>;

/** Deepest nesting of arrays/objects a manifest may have (scopes and input schemas included). */
export const MAX_JSON_DEPTH = 32;

/** Nesting depth of a parsed JSON value, computed without recursion. */
export function jsonDepth(value: unknown): number {
  let max = 0;
  const stack: [unknown, number][] = [[value, 0]];
  while (stack.length > 0) {
    const [v, depth] = stack.pop() as [unknown, number];
    if (typeof v !== 'object' || v === null) continue;
    max = Math.max(max, depth + 1);
    if (max > MAX_JSON_DEPTH) return max;
    for (const child of Object.values(v)) stack.push([child, depth + 1]);
  }
  return max;
}

/** Parse `manifest.json` bytes. Throws IMAGE_MANIFEST_INVALID. */
export function parseManifest(bytes: Uint8Array): Manifest {
  if (!isUtf8(bytes)) throw new ContainedError('IMAGE_MANIFEST_INVALID', `${MANIFEST_PATH} is not UTF-8 text`);
  let json: unknown;
  try {
    json = JSON.parse(Buffer.from(bytes).toString('utf8'));
  } catch (cause) {
    throw new ContainedError('IMAGE_MANIFEST_INVALID', `${MANIFEST_PATH} is not valid JSON: ${(cause as Error).message}`, {
      data: { issues: [{ path: '', message: 'not valid JSON' }] },
    });
  }
  // Checked before the schema: validating (and later printing) a deeply nested value recurses.
  if (jsonDepth(json) > MAX_JSON_DEPTH) {
    throw new ContainedError('IMAGE_MANIFEST_INVALID', `${MANIFEST_PATH} is nested deeper than ${MAX_JSON_DEPTH} levels`, {
      data: { issues: [{ path: '', message: `nested deeper than ${MAX_JSON_DEPTH} levels` }] },
    });
  }
  const parsed = manifestSchema.safeParse(json);
  if (!parsed.success) {
    const issues = parsed.error.issues.slice(0, 20).map((i) => ({ path: i.path.join('.'), message: i.message }));
    const summary = issues
      .slice(0, 3)
      .map((i) => `${i.path === '' ? '(root)' : i.path}: ${i.message}`)
      .join('; ');
    throw new ContainedError('IMAGE_MANIFEST_INVALID', `${MANIFEST_PATH} does not match the schema: ${summary}`, {
      data: { issues },
    });
  }
  return parsed.data;
}

/** The manifest `entry` must be one of the image's files. Throws IMAGE_ENTRY_MISSING. */
export function checkEntry(manifest: Manifest, has: (p: string) => boolean): void {
  if (!has(manifest.entry)) {
    throw new ContainedError('IMAGE_ENTRY_MISSING', `entry module ${describePath(manifest.entry)} is not in the image`);
  }
}
