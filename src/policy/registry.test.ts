import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { createKeyHasher } from '../store/key-name.js';
import { ClientRegistry } from './registry.js';

const dir = mkdtempSync(join(tmpdir(), 'registry-'));
const file = (name: string, content: unknown) => {
  const p = join(dir, name);
  writeFileSync(p, typeof content === 'string' ? content : JSON.stringify(content));
  return p;
};
const hash = createKeyHasher('a-registry-test-secret-123');

describe('ClientRegistry', () => {
  it('loads CLIENTS_FILE keyed by the hash of each key, never the key', () => {
    const r = ClientRegistry.fromFile(file('ok.json', { clients: [{ apiKey: 'sk_live_alice', tier: 'enterprise' }, { apiKey: 'sk_bad', tier: 'free', deny: true }] }), hash);
    expect(r.lookup('sk_live_alice')).toEqual({ tier: 'enterprise', allow: false, deny: false });
    expect(r.lookup('sk_bad')?.deny).toBe(true);
    expect(r.lookup('nobody')).toBeUndefined();
    expect(JSON.stringify([...Object.values(r)])).not.toContain('sk_live_alice');
  });

  it('names the bad field without echoing any key', () => {
    expect(() => ClientRegistry.fromFile(file('bad.json', { clients: [{ apiKey: 'sk_secret_key', tier: 'no spaces allowed' }] }), hash)).toThrow(/clients\[0\]\.tier: a tier name/);
    try {
      ClientRegistry.fromFile(file('bad2.json', { clients: [{ apiKey: 'sk_secret_key', tier: 'x', extra: 'sk_secret_key' }] }), hash);
    } catch (err) {
      expect((err as Error).message).not.toContain('sk_secret_key');
    }
    expect(() => ClientRegistry.fromFile(file('broken.json', '{"clients": [{"apiKey": "sk_secret_key"'), hash)).toThrow(/CLIENTS_FILE/);
  });

  it('sees a changed record at once', () => {
    const r = new ClientRegistry(hash);
    expect(r.lookup('k')).toBeUndefined();
    r.set('k', { tier: 'enterprise', allow: false, deny: false });
    expect(r.lookup('k')?.tier).toBe('enterprise');
  });

  it('an empty registry answers without hashing; a key registered later is found, and one removed is gone', () => {
    let hashed = 0;
    const r = new ClientRegistry((k) => {
      hashed++;
      return hash(k);
    });
    for (let i = 0; i < 100; i++) expect(r.lookup(`k${i}`)).toBeUndefined();
    expect(hashed).toBe(0);
    r.set('k7', { tier: 'pro', allow: false, deny: false });
    expect(r.lookup('k7')?.tier).toBe('pro');
    expect(r.lookup('k8')).toBeUndefined();
    r.setHashed(hash('k7'), undefined);
    expect(r.lookup('k7')).toBeUndefined();
    r.replaceAll(new Map([[hash('k9'), { tier: 'free', allow: false, deny: true }]]));
    expect(r.lookup('k9')?.deny).toBe(true);
  });
});
