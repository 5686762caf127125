/**
 * The `dataFlow` section of the host config: which sources are sensitive, and what an open-world
 * call does once a run has read one (docs/data-flow.md). Only the schema lives here (a foundation
 * the config composes); the rule itself is host/gate/data-flow.ts.
 */
import { z } from 'zod';

const BINDING = /^[a-z][a-zA-Z0-9]{0,63}$/;

/** One sensitive source: (part of) a capability instance the host offers, and the methods whose results count. */
export const sensitiveSourceSchema = z.strictObject({
  /** What operators read: "this run read <label> (sensitive) before this call". One line, no control characters. */
  label: z.string().min(1).max(100).regex(/^[^\p{Cc}]+$/u, 'one line of text'),
  /** The capability instance (binding, `capabilities.<name>`) the source is reached through. */
  capability: z.string().regex(BINDING, 'a capability name of this host'),
  /**
   * The sensitive part of that instance's scope, in its kind's words and within it (sql
   * `{ "tables": ["customers"] }`, fs `{ "paths": ["customers"] }`, kv `{ "prefix": "cust/" }`);
   * absent: all of it. Every instance of the same kind that may reach this part counts too.
   */
  scope: z.record(z.string(), z.unknown()).optional(),
  /** Methods whose results count as reading the source; absent: every method of the kind. */
  methods: z.array(z.string().min(1)).min(1).max(64).optional(),
});
export type SensitiveSourceConfig = z.output<typeof sensitiveSourceSchema>;

export const dataFlowConfigSchema = z.strictObject({
  /**
   * What an open-world call (`openWorld` risk: email, HTTP, an open-world MCP tool) does once its
   * run has read a sensitive source: `escalate` (default) — it waits for a human whatever its
   * grant's mode; `deny` — it fails `DATA_FLOW_DENIED` at once.
   */
  afterSensitive: z.enum(['escalate', 'deny']).default('escalate'),
  /** The sensitive sources (none by default: the rule is then off). */
  sensitive: z.array(sensitiveSourceSchema).max(256).default([]),
});
export type DataFlowConfig = z.output<typeof dataFlowConfigSchema>;
