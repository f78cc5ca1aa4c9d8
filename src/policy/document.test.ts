import { describe, expect, it } from 'vitest';
import { parsePolicyDocument } from './document.js';

const valid = {
  policies: {
    burst: { algorithm: 'token_bucket', limit: 40, windowSec: 4 },
    daily: { algorithm: 'token_bucket', limit: 5000, windowSec: 86400 },
  },
  rules: [
    { name: 'payments', match: { pathPrefix: '/payments', tiers: ['free'] }, limits: ['burst', 'daily'] },
    { name: 'default', match: {}, limits: ['burst'] },
  ],
};

const errorsOf = (doc: unknown) => {
  const r = parsePolicyDocument(doc);
  return r.ok ? [] : r.errors.map((e) => `${e.path}: ${e.message}`);
};

describe('the policy document', () => {
  it('accepts a valid document and fills in the defaults', () => {
    const r = parsePolicyDocument(valid);
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(r.document.defaultTier).toBe('free');
    expect(r.document.unknownKeys).toBe('allow');
    expect(r.document.rules[1]).toMatchObject({ by: 'apiKey', cost: 1, shadow: false, match: {} });
  });

  it('accepts every algorithm', () => {
    const policies = {
      tb: { algorithm: 'token_bucket', limit: 40, windowSec: 4 },
      smooth: { algorithm: 'gcra', limit: 10, windowSec: 1 },
      minute: { algorithm: 'fixed_window', limit: 100, windowSec: 60 },
      sliding: { algorithm: 'sliding_window', limit: 100, windowSec: 0.5 },
    };
    expect(parsePolicyDocument({ ...valid, policies, rules: [{ name: 'all', limits: Object.keys(policies) }] }).ok).toBe(true);
  });

  it.each([
    [{ ...valid, rules: [{ name: 'r', limits: ['burst', 'dayly'] }] }, 'rules[0].limits[1]: unknown policy "dayly"'],
    [{ ...valid, policies: { ...valid.policies, w: { algorithm: 'fixed_window', limit: 10, windowSec: 0.05 } } }, 'policies.w.windowSec: a window of whole milliseconds, at least 0.1 s'],
    [{ ...valid, policies: { ...valid.policies, w: { algorithm: 'sliding_window', limit: 10, windowSec: 1.0005 } } }, 'policies.w.windowSec: a window of whole milliseconds'],
    [{ ...valid, policies: { x: { algorithm: 'leaky', limit: 1, windowSec: 1 } } }, 'policies.x.algorithm: one of token_bucket, gcra, fixed_window, sliding_window'],
    [{ ...valid, policies: { x: { algorithm: 'token_bucket', limit: 0, windowSec: 1 } } }, 'policies.x.limit'],
    [{ ...valid, policies: { x: { algorithm: 'token_bucket', limit: 1, windowSec: 0 } } }, 'policies.x.windowSec: greater than 0'],
    [{ ...valid, rules: [{ name: 'r', limits: ['burst'], match: { ips: ['10.0.0.0/33'] } }] }, 'rules[0].match.ips[0]: an IP address or CIDR block'],
    [{ ...valid, rules: [{ name: 'r', limits: ['burst'], match: { pathPrefix: 'payments' } }] }, 'rules[0].match.pathPrefix: a path starting with /'],
    [{ ...valid, rules: [{ name: 'r', limits: ['burst'], by: 'cookie' }] }, 'rules[0].by: apiKey, ip, header:<name> or claim:<name>'],
    [{ ...valid, rules: [{ name: 'r', limits: ['burst'], colour: 'red' }] }, 'rules[0]: Unrecognized key: "colour"'],
    [{ ...valid, rules: [{ name: 'r', limits: ['burst'] }, { name: 'r', limits: ['burst'] }] }, 'rules[1].name: duplicate rule name "r"'],
    [{ ...valid, rules: [] }, 'rules: at least one rule'],
  ])('refuses a bad document, naming the path: %#', (doc, expected) => {
    expect(errorsOf(doc).join('\n')).toContain(expected);
  });
});
