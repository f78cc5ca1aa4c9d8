/**
 * @module policy/client-ip
 *
 * The client's IP address as a limit may key it: the socket's peer, or the
 * `X-Forwarded-For` chain walked from the right only through hops listed in
 * `TRUSTED_PROXIES` (`proxy-addr`, the walk Express uses; never the header
 * alone). IPv4-mapped IPv6 addresses count as IPv4. An IPv6 client is keyed by
 * its /`IPV6_PREFIX` network (default 64): one host can hold a whole /64, and
 * must not get a fresh limit per address.
 */
import ipaddr from 'ipaddr.js';
import proxyaddr from 'proxy-addr';

export type ClientIpOptions = {
  /** CIDRs (or addresses) of proxies whose X-Forwarded-For entry is believed. Empty: none. */
  trustedProxies: readonly string[];
  /** Prefix length IPv6 clients are grouped by. */
  ipv6Prefix: number;
};

/** What the walk needs from a request: the peer address and the X-Forwarded-For header. */
export type PeerInfo = { remoteAddress: string | undefined; forwardedFor: string | undefined };

export type ClientIp = {
  /** The client's address (IPv4-mapped IPv6 shown as IPv4). */
  address: string;
  /** The value a limit keys by: the IPv4 address, or the IPv6 network `2001:db8:1:2::/64`. */
  key: string;
};

export function createClientIp(o: ClientIpOptions): (peer: PeerInfo) => ClientIp | undefined {
  const trust = proxyaddr.compile([...o.trustedProxies]);
  const bits = o.ipv6Prefix;
  return (peer) => {
    if (!peer.remoteAddress) return undefined;
    const req = { socket: { remoteAddress: peer.remoteAddress }, connection: { remoteAddress: peer.remoteAddress }, headers: { 'x-forwarded-for': peer.forwardedFor } };
    let raw = proxyaddr(req as unknown as Parameters<typeof proxyaddr>[0], trust);
    // A hop that is not an address (only a trusted proxy could have passed it on): the last real one.
    if (!ipaddr.isValid(raw)) raw = peer.remoteAddress;
    if (!ipaddr.isValid(raw)) return undefined;
    const addr = ipaddr.process(raw);
    const address = addr.toString();
    if (addr.kind() === 'ipv4') return { address, key: address };
    return { address, key: `${networkOf(addr as ipaddr.IPv6, bits)}/${bits}` };
  };
}

/** The first `bits` bits of an IPv6 address, the rest zero. */
function networkOf(addr: ipaddr.IPv6, bits: number): string {
  const bytes = addr.toByteArray();
  for (let i = 0; i < 16; i++) {
    const keep = Math.max(0, Math.min(8, bits - i * 8));
    bytes[i] = (bytes[i] as number) & ((0xff << (8 - keep)) & 0xff);
  }
  return ipaddr.fromByteArray(bytes).toString();
}
