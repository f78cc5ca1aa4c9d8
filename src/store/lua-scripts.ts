/**
 * @module store/lua-scripts
 *
 * The Redis scripts, assembled when the module loads: for each algorithm, its
 * own part (`lua/algorithms/<name>.lua`) followed by the shared lease protocol
 * (`lua/protocol.lua`), so the bookkeeping every algorithm shares is written
 * once. Also the fleet heartbeat.
 */
import { readFileSync } from 'node:fs';
import type { AlgorithmName } from '../core/types.js';

const readLua = (name: string) => readFileSync(new URL(`../../lua/${name}`, import.meta.url), 'utf8');

const PROTOCOL = readLua('protocol.lua');

/** The lease script of one algorithm: its part, then the protocol. */
export function leaseScript(algorithm: AlgorithmName): string {
  return `${readLua(`algorithms/${algorithm}.lua`)}\n${PROTOCOL}`;
}

export const HEARTBEAT_SCRIPT = readLua('heartbeat.lua');
