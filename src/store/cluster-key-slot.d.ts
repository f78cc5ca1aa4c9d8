/** Types for `cluster-key-slot` (the CRC16 slot of a key, honouring hash tags; ioredis's own). */
declare module 'cluster-key-slot' {
  export default function calculateSlot(key: string | Buffer): number;
}
