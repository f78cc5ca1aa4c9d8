/**
 * @module store/lua-scripts
 *
 * The Redis scripts, assembled when the module loads: for each algorithm, its
 * own part (`lua/algorithms/<name>.lua`) followed by the shared lease protocol
 * (`lua/protocol.lua`), so the bookkeeping every algorithm shares is written
 * once; each call steps a batch of keys. Also the fleet heartbeat.
 */
import { readFileSync } from 'node:fs';
import type { AlgorithmName } from '../core/types.js';

const readLua = (name: string) => readFileSync(new URL(`../../lua/${name}`, import.meta.url), 'utf8');

const PROTOCOL = readLua('protocol.lua');

/**
 * The lease script of one algorithm: its part, then the protocol. The flag lets one call
 * carry keys of several slots of one Cluster node (Redis 7); the store never sends a
 * batch that spans nodes.
 */
export function leaseScript(algorithm: AlgorithmName): string {
  return `#!lua flags=allow-cross-slot-keys\n${readLua(`algorithms/${algorithm}.lua`)}\n${PROTOCOL}`;
}

export const HEARTBEAT_SCRIPT = readLua('heartbeat.lua');
