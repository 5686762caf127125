/**
 * Tool snapshots, fingerprints and argument validation.
 *
 * A snapshot is the part of a listed tool that decides what a call means and how a model is told
 * about it: name, title, description, input and output schema, annotations. Its fingerprint
 * (sha256 of canonical JSON) is what an operator accepts; any change to it withdraws the tool.
 *
 * Arguments are validated with ajv against the tool's own `inputSchema` — on a JSON copy of what
 * the agent passed, with the schema's defaults filled in, so scope checks and the server see the
 * same validated value (a constrained field cannot be dodged by leaving it to a default). The
 * dialect follows `$schema` (draft-07, 2019-09, 2020-12; none: 2020-12, the MCP default). A schema
 * ajv cannot compile makes the tool unusable, never unvalidated.
 */
import { createHash } from 'node:crypto';
import { Ajv, type ValidateFunction } from 'ajv';
import { Ajv2019 } from 'ajv/dist/2019.js';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ContainedError } from '../../runtime/errors.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

export interface McpToolSnapshot {
  name: string;
  title?: string;
  description: string;
  inputSchema: { [key: string]: Json };
  outputSchema?: { [key: string]: Json };
  annotations?: { [key: string]: Json };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** A plain JSON copy (throws on anything JSON cannot represent faithfully). */
export function jsonCopy<T = Json>(value: unknown): T {
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError('not JSON');
  return JSON.parse(text) as T;
}

/** The snapshot of a listed tool, or undefined when it is not a well-formed tool. */
export function snapshotTool(tool: unknown): McpToolSnapshot | undefined {
  if (!isObject(tool) || typeof tool.name !== 'string' || !isObject(tool.inputSchema)) return undefined;
  try {
    const snap: McpToolSnapshot = {
      name: tool.name,
      description: typeof tool.description === 'string' ? tool.description : '',
      inputSchema: jsonCopy(tool.inputSchema),
    };
    if (typeof tool.title === 'string') snap.title = tool.title;
    if (isObject(tool.outputSchema)) snap.outputSchema = jsonCopy(tool.outputSchema);
    if (isObject(tool.annotations)) snap.annotations = jsonCopy(tool.annotations);
    return snap;
  } catch {
    return undefined;
  }
}

/** Canonical JSON: object keys sorted, arrays in order. */
export function canonicalJsonText(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJsonText).join(',')}]`;
  if (isObject(value)) {
    return `{${Object.keys(value)
      .sort()
      .filter((k) => value[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJsonText(value[k])}`)
      .join(',')}}`;
  }
  return JSON.stringify(value) ?? 'null';
}

export function sameJson(a: unknown, b: unknown): boolean {
  return canonicalJsonText(a) === canonicalJsonText(b);
}

/** `sha256:<hex>` of the snapshot's canonical JSON. */
export function fingerprint(snapshot: McpToolSnapshot): string {
  return `sha256:${createHash('sha256').update(canonicalJsonText(snapshot)).digest('hex')}`;
}

/** A schema without the keys our docs printer or a validator would read as instructions of ours. */
export function schemaForDocs(schema: unknown, depth = 0): unknown {
  if (depth > 64) return {};
  if (Array.isArray(schema)) return schema.map((s) => schemaForDocs(s, depth + 1));
  if (!isObject(schema)) return schema;
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(schema)) {
    if (k === 'tsType' || (depth === 0 && (k === '$schema' || k === '$id'))) continue;
    out[k] = schemaForDocs(v, depth + 1);
  }
  return out;
}

export type ArgsCheck = { ok: true; value: Record<string, Json> } | { ok: false; path: string[]; message: string };
export type ArgsValidator = (raw: unknown) => ArgsCheck;

type AnyAjv = Ajv | Ajv2019 | Ajv2020;
type Dialect = '07' | '2019' | '2020';

function dialectOf(schema: Record<string, unknown>): Dialect {
  const d = typeof schema.$schema === 'string' ? schema.$schema : '';
  if (/draft-0[4-7]/.test(d)) return '07';
  return d.includes('2019-09') ? '2019' : '2020';
}

const AJV_OPTIONS = { strict: false, useDefaults: true, coerceTypes: false, validateFormats: false, allErrors: false, logger: false } as const;

function newAjv(dialect: Dialect): AnyAjv {
  if (dialect === '07') return new Ajv(AJV_OPTIONS);
  return dialect === '2019' ? new Ajv2019(AJV_OPTIONS) : new Ajv2020(AJV_OPTIONS);
}

/**
 * Compiles tools' input schemas: one ajv instance per dialect, made on first use (making one costs
 * tens of ms; compiling a tool's schema with it well under one). A schema whose `$id` collides with
 * one compiled before gets an instance of its own.
 */
export class SchemaCompiler {
  private readonly instances = new Map<Dialect, AnyAjv>();

  /** Compile a tool's input schema. Throws INVALID_ARGUMENT when ajv cannot compile it. */
  compile(tool: string, inputSchema: Record<string, unknown>): ArgsValidator {
    const dialect = dialectOf(inputSchema);
    const { $schema: _ignored, ...schema } = inputSchema;
    let validate: ValidateFunction;
    try {
      let ajv = this.instances.get(dialect);
      if (!ajv) this.instances.set(dialect, (ajv = newAjv(dialect)));
      try {
        validate = ajv.compile(schema);
      } catch (error) {
        if (!/already exists/.test(String((error as Error).message))) throw error;
        validate = newAjv(dialect).compile(schema);
      }
    } catch (cause) {
      throw new ContainedError('INVALID_ARGUMENT', `mcp: the input schema of tool "${tool}" does not compile`, { cause });
    }
    return validatorOf(validate);
  }
}

/** Compile one schema with a compiler of its own (tests, one-offs). */
export function compileArgs(tool: string, inputSchema: Record<string, unknown>): ArgsValidator {
  return new SchemaCompiler().compile(tool, inputSchema);
}

function validatorOf(validate: ValidateFunction): ArgsValidator {
  return (raw) => {
    let value: unknown;
    try {
      value = raw === undefined ? {} : jsonCopy(raw);
    } catch {
      return { ok: false, path: [], message: 'the argument is not JSON' };
    }
    if (!isObject(value)) return { ok: false, path: [], message: 'the argument must be an object' };
    if (validate(value)) return { ok: true, value: value as Record<string, Json> };
    const err = validate.errors?.[0];
    const path = (err?.instancePath ?? '').split('/').slice(1).map((p) => p.replace(/~1/g, '/').replace(/~0/g, '~'));
    if (err?.keyword === 'required' && typeof err.params.missingProperty === 'string') path.push(err.params.missingProperty);
    if (err?.keyword === 'additionalProperties' && typeof err.params.additionalProperty === 'string') path.push(err.params.additionalProperty);
    return { ok: false, path, message: err?.message ?? 'does not match the schema' };
  };
}
