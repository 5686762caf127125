/**
 * E-mail address syntax and recipient rules for the outbox capability.
 *
 * Defends against recipient lookalikes and header injection: only a bare, conservative
 * `local@domain` is an address (no display names, angle brackets, quotes, comments, commas, CR/LF,
 * `%`/`!` source-routing, non-ASCII lookalike letters), and a rule matches by exact, case-folded
 * comparison: `a@example.com` matches only that address, `@example.com` only that exact domain (not
 * `example.com.evil.org`, not `sub.example.com`). IDN domains must be written in punycode.
 *
 * Fails closed: text that is not such an address never matches any rule; a rule that is not one
 * throws when compiled (the scope schema turns it into `INVALID_SCOPE`).
 */
import { z } from 'zod';

const LOCAL = /^[A-Za-z0-9_+'=-]+(\.[A-Za-z0-9_+'=-]+)*$/;
const LABEL = '[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?';
const DOMAIN = new RegExp(`^${LABEL}(\\.${LABEL})*\\.([a-z]{2,63}|xn--[a-z0-9-]{1,59})$`);

export const MAX_ADDRESS_LENGTH = 254;

export function isDomain(text: string): boolean {
  return text.length <= 253 && DOMAIN.test(text.toLowerCase());
}

/** The canonical (lower-case) form of a bare address, or `undefined` when it is not one. */
export function parseAddress(text: string): string | undefined {
  if (text.length > MAX_ADDRESS_LENGTH) return undefined;
  const at = text.indexOf('@');
  if (at < 1 || at !== text.lastIndexOf('@')) return undefined;
  const local = text.slice(0, at);
  const domain = text.slice(at + 1);
  if (local.length > 64 || !LOCAL.test(local) || !isDomain(domain)) return undefined;
  return `${local}@${domain}`.toLowerCase();
}

/** Argument schema of one address. The text is kept as given for delivery; rules compare it case-folded. */
export const addressSchema = z
  .string()
  .max(MAX_ADDRESS_LENGTH)
  .refine((t) => parseAddress(t) !== undefined, 'must be a bare e-mail address like name@example.com (no display name, quotes or brackets)');

export type RecipientRule = { kind: 'address'; address: string } | { kind: 'domain'; domain: string };

/** `name@example.com` or `@example.com`; throws on anything else. */
export function compileRule(text: string): RecipientRule {
  if (text.startsWith('@')) {
    const domain = text.slice(1).toLowerCase();
    if (!isDomain(domain)) throw new Error(`recipient rule "${text}" is not "@" followed by a domain`);
    return { kind: 'domain', domain };
  }
  const address = parseAddress(text);
  if (!address) throw new Error(`recipient rule "${text}" is not an address or "@domain"`);
  return { kind: 'address', address };
}

export function formatRule(rule: RecipientRule): string {
  return rule.kind === 'address' ? rule.address : `@${rule.domain}`;
}

export function ruleAllows(rule: RecipientRule, address: string): boolean {
  const canonical = parseAddress(address);
  if (!canonical) return false;
  if (rule.kind === 'address') return canonical === rule.address;
  return canonical.slice(canonical.lastIndexOf('@') + 1) === rule.domain;
}

/** The rule allowing exactly what both allow, if any. */
export function intersectRules(a: RecipientRule, b: RecipientRule): RecipientRule | undefined {
  if (a.kind === 'address') return ruleAllows(b, a.address) ? a : undefined;
  if (b.kind === 'address') return ruleAllows(a, b.address) ? b : undefined;
  return a.domain === b.domain ? a : undefined;
}
