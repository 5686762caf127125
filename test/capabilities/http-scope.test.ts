// Pure parts of the http capability: address classification, scope compilation, the scope
// predicate with lookalike URLs, attenuation (property-tested: a child never allows more).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkAddress, isPublicAddress, parseIp } from '../../capabilities/http/address.js';
import { createHttp, httpCapability } from '../../capabilities/http/index.js';
import { checkRequest } from '../../capabilities/http/policy.js';
import { type HttpScope, compileScope, intersectHttpScopes } from '../../capabilities/http/scope.js';

const pub = (text: string): boolean => {
  const bytes = parseIp(text);
  return bytes !== undefined && isPublicAddress(bytes);
};

describe('address classification', () => {
  it.each([
    '127.0.0.1', '127.255.255.254', '10.1.2.3', '172.16.0.1', '172.31.255.255', '192.168.1.1', '169.254.169.254', '100.64.0.1',
    '0.0.0.0', '224.0.0.1', '255.255.255.255', '192.0.2.1', '198.18.0.1',
    '::', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '::ffff:10.0.0.1', '::127.0.0.1', '64:ff9b::7f00:1', '64:ff9b::a9fe:a9fe',
    '2002:7f00:1::', '2002:a9fe:a9fe::1', 'fe80::1', 'fc00::1', 'fd12:3456::1', 'ff02::1', 'fec0::1', '2001:db8::1', '2001::1', '100::1',
  ])('%s is not public', (ip) => {
    expect(pub(ip)).toBe(false);
  });

  it.each(['8.8.8.8', '1.1.1.1', '93.184.216.34', '172.32.0.1', '2606:4700:4700::1111', '::ffff:8.8.8.8', '2a00:1450::1'])('%s is public', (ip) => {
    expect(pub(ip)).toBe(true);
  });

  it.each(['127.1', '0x7f.0.0.1', '017.0.0.1', '1.2.3.4.5', 'fe80::1%eth0', '::ffff:127.0.0.1:80', 'localhost', '', '1::2::3', ':::1'])('odd text %j fails closed', (text) => {
    expect(checkAddress(text, { allowPrivateNetwork: false, allowedCidrs: [] }).ok).toBe(false);
  });

  it('allowedCidrs admits exactly the listed block, also through an IPv4-mapped address', () => {
    const policy = { allowPrivateNetwork: false, allowedCidrs: [compileScope({ origins: ['http://a.example'], allowedCidrs: ['127.0.0.2/32'] }).address.allowedCidrs[0]!] };
    expect(checkAddress('127.0.0.2', policy).ok).toBe(true);
    expect(checkAddress('::ffff:127.0.0.2', policy).ok).toBe(true);
    expect(checkAddress('127.0.0.1', policy).ok).toBe(false);
    expect(checkAddress('::1', policy).ok).toBe(false);
  });
});

describe('scope compilation', () => {
  it.each<[string, Partial<HttpScope>]>([
    ['wildcard TLD', { origins: ['https://*.com'] }],
    ['wildcard on IP', { origins: ['https://*.1.2.3.4'] }],
    ['path in origin', { origins: ['https://api.example.com/v1'] }],
    ['userinfo in origin', { origins: ['https://user@api.example.com'] }],
    ['other scheme', { origins: ['ftp://api.example.com'] }],
    ['non-canonical IPv4', { origins: ['http://0x7f.1'] }],
    ['trailing dot', { origins: ['https://api.example.com.'] }],
    ['port out of range', { origins: ['https://api.example.com:70000'] }],
    ['bad CIDR', { origins: ['https://a.example'], allowedCidrs: ['10.0.0.0/33'] }],
    ['CIDR not an address', { origins: ['https://a.example'], allowedCidrs: ['intranet'] }],
    ['prefix with ..', { origins: ['https://a.example'], pathPrefixes: ['/v1/../admin'] }],
    ['prefix with encoded slash', { origins: ['https://a.example'], pathPrefixes: ['/v1%2fadmin'] }],
    ['relative prefix', { origins: ['https://a.example'], pathPrefixes: ['v1'] }],
    ['credential for an unlisted origin', { origins: ['https://a.example'], credentials: [{ origin: 'https://b.example', header: 'authorization', secret: 's' }] }],
    ['credential on a wildcard', { origins: ['https://*.a.example'], credentials: [{ origin: 'https://*.a.example', header: 'authorization', secret: 's' }] }],
    ['credential as host header', { origins: ['https://a.example'], credentials: [{ origin: 'https://a.example', header: 'host', secret: 's' }] }],
    ['unknown key', { origins: ['https://a.example'], allowEverything: true } as Partial<HttpScope>],
  ])('%s fails at creation with INVALID_SCOPE', (_name, scope) => {
    expect(() => createHttp(scope as HttpScope)).toThrow(expect.objectContaining({ code: 'INVALID_SCOPE' }));
  });

  it('a GET-only scope exposes only the read-only method', () => {
    const inst = createHttp({ origins: ['https://api.example.com'] });
    expect(inst.methodNames()).toEqual(['get']);
    expect(inst.risk('get')).toMatchObject({ readOnly: true, openWorld: true, destructive: false });
    const rw = createHttp({ origins: ['https://api.example.com'], methods: ['GET', 'POST'] });
    expect(rw.methodNames().sort()).toEqual(['get', 'send']);
    expect(rw.risk('send')).toMatchObject({ readOnly: false, openWorld: true, reversible: false });
  });

  it('describes credentials by header and origin, never by value', () => {
    const inst = createHttp(
      { origins: ['https://api.example.com'], credentials: [{ origin: 'https://api.example.com', header: 'Authorization', secret: 'tok' }] },
      { secrets: { get: () => 'Bearer VALUE-42' } },
    );
    const d = JSON.stringify(inst.describe());
    expect(d).toContain('authorization');
    expect(d).not.toContain('VALUE-42');
  });
});

describe('scope predicate', () => {
  const scope = compileScope({ origins: ['https://api.example.com', 'https://*.cdn.example.com'], methods: ['GET', 'POST'], pathPrefixes: ['/v1'] });
  const ok = (url: string, method: 'GET' | 'POST' | 'PUT' = 'GET') => checkRequest(scope, { url, method, headers: {}, bodyBytes: 0 }).ok;

  it('allows what the scope names', () => {
    expect(ok('https://api.example.com/v1')).toBe(true);
    expect(ok('https://api.example.com/v1/items?q=1')).toBe(true);
    expect(ok('https://API.EXAMPLE.COM:443/v1/x')).toBe(true);
    expect(ok('https://img.cdn.example.com/v1/a.png')).toBe(true);
    expect(ok('https://api.example.com/v1/x', 'POST')).toBe(true);
  });

  it.each([
    'http://api.example.com/v1', // scheme
    'https://api.example.com:8443/v1', // port
    'https://api.example.com.evil.org/v1', // suffix lookalike
    'https://evilapi.example.com/v1',
    'https://api.example.com@evil.org/v1', // userinfo trick: host is evil.org
    'https://user:pw@api.example.com/v1', // userinfo at all
    'https://cdn.example.com/v1', // wildcard does not match the apex
    'https://api.example.com/v10',
    'https://api.example.com/v1/../admin',
    'https://api.example.com/v1/%2e%2e/admin',
    'https://api.example.com/v1%2fadmin',
    'https://api.example.com/v1/%5c..%5cadmin',
    'https://api.example.com/admin?/v1',
    'file:///etc/passwd',
    'ftp://api.example.com/v1',
    'data:text/plain,hi',
    'javascript:alert(1)',
    'not a url',
    'https://xn--pple-43d.example.com/v1',
  ])('%s is out of scope', (url) => {
    expect(ok(url)).toBe(false);
  });

  it('refuses a method outside the list', () => {
    expect(ok('https://api.example.com/v1', 'PUT')).toBe(false);
  });

  it('fails closed when the predicate itself throws (SDK wraps it)', () => {
    const inst = createHttp({ origins: ['https://api.example.com'] });
    // A value that passed no schema: the predicate must not be fooled into "ok".
    expect(inst.checkScope('get', { url: 42 }).ok).toBe(false);
  });
});

describe('attenuation', () => {
  const parent: HttpScope = {
    origins: ['https://*.example.com', 'http://127.0.0.1:8080'],
    methods: ['GET', 'POST'],
    pathPrefixes: ['/v1', '/v2'],
    allowedCidrs: ['127.0.0.0/8'],
    maxResponseBytes: 5000,
    credentials: [{ origin: 'https://api.example.com', header: 'authorization', secret: 'tok' }],
  };

  it('narrows every field and never widens', () => {
    const child = intersectHttpScopes(parent, {
      origins: ['https://api.example.com', 'https://evil.org', 'http://127.0.0.1:9090'],
      methods: ['GET', 'DELETE'],
      pathPrefixes: ['/v1/items', '/admin'],
      allowPrivateNetwork: true,
      maxResponseBytes: 1_000_000,
      credentials: [{ origin: 'https://api.example.com', header: 'authorization', secret: 'other-secret' }],
    });
    expect(child.origins).toEqual(['https://api.example.com']);
    expect(child.methods).toEqual(['GET']);
    expect(child.pathPrefixes).toEqual(['/v1/items']);
    expect(child.allowPrivateNetwork).toBeUndefined();
    expect(child.allowedCidrs).toEqual(['127.0.0.0/8']);
    expect(child.maxResponseBytes).toBe(5000);
    expect(child.credentials).toBeUndefined();
  });

  it('inherits omitted fields', () => {
    const child = intersectHttpScopes(parent, { origins: ['https://api.example.com'] });
    expect(child.methods).toEqual(['GET', 'POST']);
    expect(child.credentials).toEqual(parent.credentials);
    expect(child.maxResponseBytes).toBe(5000);
  });

  it('refuses a child with nothing in common', () => {
    const inst = createHttp(parent);
    expect(() => inst.attenuate({ origins: ['https://evil.org'] })).toThrow(expect.objectContaining({ code: 'INVALID_SCOPE' }));
  });

  it('property: a request the child allows is allowed by the parent', () => {
    const hosts = ['api.example.com', 'a.b.example.com', 'example.com', 'evil.org', '127.0.0.1'];
    const originArb = fc.record({
      scheme: fc.constantFrom('http', 'https'),
      wild: fc.boolean(),
      host: fc.constantFrom('example.com', 'b.example.com', 'api.example.com', 'evil.org', '127.0.0.1'),
      port: fc.constantFrom('', ':8080'),
    }).map(({ scheme, wild, host, port }) => `${scheme}://${wild && host !== '127.0.0.1' ? '*.' : ''}${host}${port}`);
    const scopeArb = fc.record({
      origins: fc.array(originArb, { minLength: 1, maxLength: 3 }),
      methods: fc.option(fc.subarray(['GET', 'HEAD', 'POST', 'DELETE'] as const, { minLength: 1 }), { nil: undefined }),
      pathPrefixes: fc.option(fc.array(fc.constantFrom('/', '/v1', '/v1/', '/v1/items', '/v2'), { minLength: 1, maxLength: 2 }), { nil: undefined }),
    }).map((s) => Object.fromEntries(Object.entries(s).filter(([, v]) => v !== undefined)) as unknown as HttpScope);
    const reqArb = fc.record({
      scheme: fc.constantFrom('http', 'https'),
      host: fc.constantFrom(...hosts),
      port: fc.constantFrom('', ':8080'),
      path: fc.constantFrom('/', '/v1', '/v1/items/3', '/v10', '/v2/x'),
      method: fc.constantFrom('GET', 'HEAD', 'POST', 'DELETE') as fc.Arbitrary<'GET' | 'HEAD' | 'POST' | 'DELETE'>,
    });
    fc.assert(
      fc.property(scopeArb, scopeArb, reqArb, (p, n, r) => {
        let child: HttpScope;
        try {
          child = intersectHttpScopes(p, n);
        } catch {
          return true; // nothing in common: refused outright
        }
        const req = { url: `${r.scheme}://${r.host}${r.port}${r.path}`, method: r.method, headers: {}, bodyBytes: 0 };
        const childOk = checkRequest(compileScope(child), req).ok;
        if (!childOk) return true;
        return checkRequest(compileScope(p), req).ok && checkRequest(compileScope(n), req).ok;
      }),
      { numRuns: 300 },
    );
  });

  it('the definition is named http and validates its scope strictly', () => {
    expect(httpCapability.name).toBe('http');
    expect(httpCapability.scope.safeParse({ origins: ['https://a.example'], extra: 1 }).success).toBe(false);
  });
});

describe('secret redaction', () => {
  it('replaces verbatim, token, URL-encoded and case-changed echoes', async () => {
    const { redact, secretVariants } = await import('../../capabilities/http/headers.js');
    const v = secretVariants(['Bearer Tok-ABCDEFGH-123']);
    expect(redact('a Bearer Tok-ABCDEFGH-123 b', v)).toBe('a [REDACTED] b');
    expect(redact('token=Tok-ABCDEFGH-123', v)).toBe('token=[REDACTED]');
    expect(redact('/Bearer%20Tok-ABCDEFGH-123', v)).toBe('/[REDACTED]');
    expect(redact('http://tok-abcdefgh-123.evil.test', v)).toBe('http://[REDACTED].evil.test');
  });

  it('cuts a secret prefix left at the end of a truncated text', async () => {
    const { redact, secretVariants } = await import('../../capabilities/http/headers.js');
    const v = secretVariants(['s3cret-value-xyz']);
    expect(redact('data: s3cret-va', v, true)).toBe('data: ');
    expect(redact('data: s3cret-va', v, false)).toBe('data: s3cret-va');
  });
});
