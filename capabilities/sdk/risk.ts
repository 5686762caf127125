/**
 * Risk annotations on capability methods. The gate reads them to decide what needs a human.
 * Unset annotations take the worst case (as MCP does for tool annotations): a method nobody
 * described is treated as writing, destructive, irreversible and talking to the outside world.
 */
export interface RiskAnnotations {
  /** Only reads; never changes anything. */
  readOnly: boolean;
  /** May destroy data or state (delete, overwrite, drop). Needs a second sign-off when assisted. */
  destructive: boolean;
  /** Its effect can be undone. Only reversible actions can ever be promoted to `executed`. */
  reversible: boolean;
  /** Talks to the world outside the host (network, email, payments). */
  openWorld: boolean;
  /** Moves money. Never autonomous; needs a second sign-off. */
  financial: boolean;
}

export const WORST_CASE_RISK: Readonly<RiskAnnotations> = Object.freeze({
  readOnly: false,
  destructive: true,
  reversible: false,
  openWorld: true,
  financial: false,
});

/** Fill unset annotations with the worst case. A read-only method is, by definition, not destructive. */
export function resolveRisk(partial: Partial<RiskAnnotations> | undefined): RiskAnnotations {
  const risk: RiskAnnotations = { ...WORST_CASE_RISK, ...(partial ?? {}) };
  if (partial?.readOnly === true) {
    if (partial.destructive === undefined) risk.destructive = false;
    if (partial.reversible === undefined) risk.reversible = true;
  }
  return risk;
}

/** Destructive and financial actions always keep a human in the loop and need two approvers. */
export function needsSecondSignOff(risk: RiskAnnotations): boolean {
  return risk.destructive || risk.financial;
}
