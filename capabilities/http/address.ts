/**
 * IP address classification for the http capability's SSRF defence.
 *
 * Defends against requests that reach the host's own network: loopback, private, link-local (cloud
 * metadata at 169.254.169.254), unique-local, multicast, unspecified, documentation and other
 * special-purpose ranges, including IPv4 addresses smuggled inside IPv6 (IPv4-mapped `::ffff:a.b.c.d`,
 * IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`).
 *
 * Fails closed: anything that does not parse as a plain IPv4 or IPv6 address (zone ids, odd
 * notations) is "not public". IPv6 is public only inside global unicast `2000::/3` and outside every
 * special range. Pure functions; no DNS here (the resolver lives in fetch.ts).
 */

/** An address as bytes: 4 for IPv4, 16 for IPv6. */
export type IpBytes = Uint8Array;

/** A compiled CIDR block. */
export interface Cidr {
  bytes: IpBytes;
  prefix: number;
  /** Canonical text, e.g. `127.0.0.1/32`. */
  text: string;
}

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;

/** Parse dotted-quad IPv4 (no leading zeros, no shorthand). `undefined` when it is not one. */
export function parseIpv4(text: string): IpBytes | undefined {
  if (!V4.test(text)) return undefined;
  return Uint8Array.from(text.split('.').map(Number));
}

/** Parse IPv6 text (with `::` and an optional dotted IPv4 tail; no zone id). */
export function parseIpv6(text: string): IpBytes | undefined {
  if (text.length === 0 || text.length > 45 || !/^[0-9a-fA-F:.]+$/.test(text)) return undefined;
  let head = text;
  let tail: IpBytes | undefined;
  const lastColon = text.lastIndexOf(':');
  if (text.includes('.')) {
    tail = parseIpv4(text.slice(lastColon + 1));
    if (!tail) return undefined;
    head = text.slice(0, lastColon + 1) + '0:0';
  }
  const halves = head.split('::');
  if (halves.length > 2) return undefined;
  const part = (s: string): number[] | undefined => {
    if (s === '') return [];
    const groups = s.split(':');
    const out: number[] = [];
    for (const g of groups) {
      if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
      out.push(parseInt(g, 16));
    }
    return out;
  };
  const left = part(halves[0] ?? '');
  const right = halves.length === 2 ? part(halves[1] ?? '') : [];
  if (!left || !right) return undefined;
  const missing = 8 - left.length - right.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const groups = [...left, ...new Array<number>(halves.length === 2 ? missing : 0).fill(0), ...right];
  const bytes = new Uint8Array(16);
  groups.forEach((g, i) => {
    bytes[i * 2] = g >> 8;
    bytes[i * 2 + 1] = g & 0xff;
  });
  if (tail) bytes.set(tail, 12);
  return bytes;
}

/** Parse an address literal, IPv4 or IPv6 (brackets allowed around IPv6). */
export function parseIp(text: string): IpBytes | undefined {
  const t = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  return parseIpv4(t) ?? parseIpv6(t);
}

export function formatIp(bytes: IpBytes): string {
  if (bytes.length === 4) return [...bytes].join('.');
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] ?? 0) << 8) | (bytes[i + 1] ?? 0)).toString(16));
  // Compress the longest run of zero groups (RFC 5952), for readable messages only.
  let best = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen && j - i > 1) [best, bestLen] = [i, j - i];
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** Parse `a.b.c.d/n` or `x::/n`; throws a plain Error on anything else (callers turn it into INVALID_SCOPE). */
export function parseCidr(text: string): Cidr {
  const slash = text.indexOf('/');
  const addr = slash < 0 ? text : text.slice(0, slash);
  const bytes = parseIp(addr);
  if (!bytes) throw new Error(`"${text}" is not an IP address or CIDR block`);
  const max = bytes.length * 8;
  const prefixText = slash < 0 ? String(max) : text.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) throw new Error(`"${text}" has an invalid prefix length`);
  const prefix = Number(prefixText);
  const network = maskTo(bytes, prefix);
  return { bytes: network, prefix, text: `${formatIp(network)}/${prefix}` };
}

function maskTo(bytes: IpBytes, prefix: number): IpBytes {
  const out = new Uint8Array(bytes.length);
  for (let i = 0; i < bytes.length; i++) {
    const bits = Math.max(0, Math.min(8, prefix - i * 8));
    out[i] = (bytes[i] ?? 0) & ((0xff << (8 - bits)) & 0xff);
  }
  return out;
}

export function cidrContains(cidr: Cidr, bytes: IpBytes): boolean {
  if (bytes.length !== cidr.bytes.length) return false;
  const masked = maskTo(bytes, cidr.prefix);
  return masked.every((b, i) => b === cidr.bytes[i]);
}

/** `inner` lies entirely inside `outer` (used to intersect CIDR lists on attenuation). */
export function cidrWithin(inner: Cidr, outer: Cidr): boolean {
  return inner.bytes.length === outer.bytes.length && inner.prefix >= outer.prefix && cidrContains(outer, inner.bytes);
}

const c = (text: string): Cidr => parseCidr(text);

/** IPv4 ranges that are not the public internet (IANA special-purpose registry, RFC 6890 and later). */
const V4_SPECIAL: readonly Cidr[] = [
  '0.0.0.0/8', // "this network"; 0.0.0.0 reaches the local host on Linux
  '10.0.0.0/8',
  '100.64.0.0/10', // carrier-grade NAT
  '127.0.0.0/8',
  '169.254.0.0/16', // link-local, cloud metadata
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.0.2.0/24',
  '192.88.99.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, broadcast
].map(c);

/** IPv6 ranges inside 2000::/3 that are still not public. */
const V6_SPECIAL: readonly Cidr[] = ['2001::/23', '2001:db8::/32', '3fff::/20'].map(c);
const V6_GLOBAL = c('2000::/3');
const V4_MAPPED = c('::ffff:0:0/96');
const V4_COMPAT = c('::/96');
const NAT64 = c('64:ff9b::/96');
const SIX_TO_FOUR = c('2002::/16');

/**
 * The IPv4 address an IPv6 address carries and would reach (mapped, compatible, NAT64, 6to4), or
 * `undefined` when it carries none.
 */
export function embeddedIpv4(bytes: IpBytes): IpBytes | undefined {
  if (bytes.length !== 16) return undefined;
  if (cidrContains(V4_MAPPED, bytes) || cidrContains(V4_COMPAT, bytes) || cidrContains(NAT64, bytes)) return bytes.slice(12, 16);
  if (cidrContains(SIX_TO_FOUR, bytes)) return bytes.slice(2, 6);
  return undefined;
}

/** True only for addresses on the public internet. */
export function isPublicAddress(bytes: IpBytes): boolean {
  if (bytes.length === 4) return !V4_SPECIAL.some((r) => cidrContains(r, bytes));
  if (bytes.length !== 16) return false;
  const v4 = embeddedIpv4(bytes);
  if (v4) return isPublicAddress(v4);
  return cidrContains(V6_GLOBAL, bytes) && !V6_SPECIAL.some((r) => cidrContains(r, bytes));
}

export interface AddressPolicy {
  /** Every address allowed (loopback, private, link-local…): an explicit operator choice. */
  allowPrivateNetwork: boolean;
  /** Non-public addresses allowed in addition to the public internet. */
  allowedCidrs: readonly Cidr[];
}

export type AddressVerdict = { ok: true; address: string; family: 4 | 6 } | { ok: false; reason: string };

/**
 * May a connection go to this address? Parses the text itself (fails closed on anything odd);
 * IPv6 addresses carrying an IPv4 address are judged by the IPv4 address they reach.
 */
export function checkAddress(text: string, policy: AddressPolicy): AddressVerdict {
  const bytes = parseIp(text);
  if (!bytes) return { ok: false, reason: `"${text}" is not a plain IP address` };
  const family = bytes.length === 4 ? 4 : 6;
  const address = formatIp(bytes);
  if (policy.allowPrivateNetwork || isPublicAddress(bytes)) return { ok: true, address, family };
  const v4 = embeddedIpv4(bytes);
  const allowed = policy.allowedCidrs.some((r) => cidrContains(r, bytes) || (v4 !== undefined && cidrContains(r, v4)));
  if (allowed) return { ok: true, address, family };
  return { ok: false, reason: `${address} is a private, loopback, link-local or otherwise non-public address` };
}
