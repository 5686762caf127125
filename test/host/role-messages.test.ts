/**
 * Refusals that name an operator's role read as English: "alice is an approver", not "a approver"
 * (HTTP API, operator channel, and the helper every message uses).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { roleWithArticle } from '../../host/model.js';
import { call } from './api-client.js';
import { type Fixture, startFixture } from './helpers/host-fixture.js';

let fx: Fixture;
beforeAll(async () => {
  fx = await startFixture();
});
afterAll(async () => {
  await fx.close();
});

describe('role names in refusals', () => {
  it('roleWithArticle: a viewer, an approver, an admin, a platform client', () => {
    expect(roleWithArticle('viewer')).toBe('a viewer');
    expect(roleWithArticle('approver')).toBe('an approver');
    expect(roleWithArticle('admin')).toBe('an admin');
    expect(roleWithArticle('platform')).toBe('a platform client');
  });

  it('HTTP API: an approver token on a platform endpoint is FORBIDDEN "alice is an approver"', async () => {
    const res = await call(fx.host.url as string, 'GET', '/v1/runs/00000000-0000-4000-8000-000000000000', { token: fx.tokens['alice'] as string });
    expect(res.status).toBe(403);
    expect(res.body.error.code).toBe('FORBIDDEN');
    expect(res.body.error.message).toMatch(/alice is an approver$/);
  });

  it('host backend (behind the channel and the console): "revoking a grant needs the admin role; alice is an approver"', async () => {
    const error = await fx.host.backend.revokeGrant({ tokenId: 't', name: 'alice', role: 'approver' }, 'grt_nothere', 'x').catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'FORBIDDEN' });
    expect((error as Error).message).toBe('revoking a grant needs the admin role; alice is an approver');
  });
});
