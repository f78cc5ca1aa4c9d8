import { describe, expect, it } from 'vitest';
import { createClientIp } from './client-ip.js';

describe('client IP', () => {
  const behindProxy = createClientIp({ trustedProxies: ['10.0.0.0/8'], ipv6Prefix: 64 });
  const direct = createClientIp({ trustedProxies: [], ipv6Prefix: 64 });

  it.each([
    // peer, X-Forwarded-For, client key
    ['203.0.113.9', undefined, '203.0.113.9'], // no proxy header
    ['203.0.113.9', '1.2.3.4', '203.0.113.9'], // an untrusted peer's header is ignored (spoofing)
    ['10.0.0.2', '198.51.100.7', '198.51.100.7'], // one trusted proxy
    ['10.0.0.2', '1.2.3.4, 198.51.100.7', '198.51.100.7'], // the client's own entry is left of the real one
    ['10.0.0.2', '198.51.100.7, 10.0.0.3', '198.51.100.7'], // two trusted hops, walked from the right
    ['10.0.0.2', 'garbage', '10.0.0.2'], // a hop that is not an address: the last real one
    ['::ffff:10.0.0.2', '198.51.100.7', '198.51.100.7'], // an IPv4-mapped proxy is IPv4
  ])('peer %s, X-Forwarded-For %s: %s', (peer, xff, key) => {
    expect(behindProxy({ remoteAddress: peer, forwardedFor: xff })?.key).toBe(key);
  });

  it('never believes X-Forwarded-For without trusted proxies', () => {
    expect(direct({ remoteAddress: '10.0.0.2', forwardedFor: '198.51.100.7' })?.key).toBe('10.0.0.2');
  });

  it('groups IPv6 clients by their /64 (configurable), and shows IPv4-mapped clients as IPv4', () => {
    expect(direct({ remoteAddress: '2001:db8:1:2:aaaa:bbbb:cccc:dddd', forwardedFor: undefined })?.key).toBe('2001:db8:1:2::/64');
    expect(direct({ remoteAddress: '2001:db8:1:2::1', forwardedFor: undefined })?.key).toBe('2001:db8:1:2::/64');
    const by48 = createClientIp({ trustedProxies: [], ipv6Prefix: 48 });
    expect(by48({ remoteAddress: '2001:db8:1:2::1', forwardedFor: undefined })?.key).toBe('2001:db8:1::/48');
    expect(direct({ remoteAddress: '::ffff:192.0.2.1', forwardedFor: undefined })).toEqual({ address: '192.0.2.1', key: '192.0.2.1' });
  });
});
