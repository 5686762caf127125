/**
 * MCP tool annotations → our risk annotations. The MCP spec calls annotations untrusted hints, so
 * every missing hint takes the worst case, exactly as the spec's own defaults do: not read-only,
 * destructive, open world. MCP has no "reversible": only a read-only tool counts as reversible
 * (nothing to undo); `idempotentHint` says a retry is harmless, not that the effect can be undone,
 * so it never lowers risk. Nothing in MCP says "moves money": `financial` is false unless the
 * operator raises it.
 *
 * The operator's overrides come last. Raising risk is always allowed; an override that sets any
 * annotation below the worst case needs a recorded reason (judged against the worst case, not the
 * server's current hints, which may change), or the capability fails to start (`INVALID_ARGUMENT`).
 */
import { ContainedError } from '../../runtime/errors.js';
import type { RiskAnnotations } from '../sdk/risk.js';
import type { RiskOverride } from './options.js';

/** The MCP `ToolAnnotations` hints we read (anything else in them is ignored). */
export interface McpToolHints {
  readOnlyHint?: unknown;
  destructiveHint?: unknown;
  idempotentHint?: unknown;
  openWorldHint?: unknown;
}

/** The risk the server's hints claim, worst case wherever a hint is missing or not a boolean. */
export function riskFromHints(hints: McpToolHints | undefined): RiskAnnotations {
  const readOnly = hints?.readOnlyHint === true;
  return {
    readOnly,
    destructive: readOnly ? false : hints?.destructiveHint !== false,
    reversible: readOnly,
    openWorld: hints?.openWorldHint !== false,
    financial: false,
  };
}

const LOWER: Record<keyof RiskAnnotations, boolean> = {
  // The value of each annotation that means *less* risk.
  readOnly: true,
  destructive: false,
  reversible: true,
  openWorld: false,
  financial: false,
};

/** The annotations an override lowers (empty when it only raises or repeats). */
export function loweredBy(base: RiskAnnotations, override: RiskOverride | undefined): (keyof RiskAnnotations)[] {
  if (!override) return [];
  return (Object.keys(LOWER) as (keyof RiskAnnotations)[]).filter((k) => override[k] !== undefined && override[k] !== base[k] && override[k] === LOWER[k]);
}

export interface ToolRisk {
  risk: RiskAnnotations;
  /** The operator's reason, when the override lowered something. */
  loweredReason?: string;
}

/** The hints' risk with the operator's override applied. Throws INVALID_ARGUMENT for an unexplained lowering. */
export function toolRisk(tool: string, hints: McpToolHints | undefined, override: RiskOverride | undefined): ToolRisk {
  const base = riskFromHints(hints);
  if (!override) return { risk: base };
  const lowered = loweredBy(base, override);
  if (lowered.length > 0 && override.reason === undefined) {
    throw new ContainedError(
      'INVALID_ARGUMENT',
      `mcp: the risk override of tool "${tool}" lowers ${lowered.join(', ')}: give a "reason" (it is recorded and shown in the docs)`,
      { data: { path: ['risk', tool, 'reason'] } },
    );
  }
  const risk: RiskAnnotations = { ...base };
  for (const k of Object.keys(LOWER) as (keyof RiskAnnotations)[]) {
    const v = override[k];
    if (v !== undefined) risk[k] = v;
  }
  // Declared read-only by the operator: not destructive and nothing to undo, unless they say otherwise.
  if (override.readOnly === true) {
    if (override.destructive === undefined) risk.destructive = false;
    if (override.reversible === undefined) risk.reversible = true;
  }
  return lowered.length > 0 ? { risk, loweredReason: override.reason as string } : { risk };
}
