import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createKeyHasher } from '../store/key-name.js';
import { loadPolicyFile } from './load.js';
import { ClientRegistry } from './registry.js';
import { compilePolicies } from './rules.js';

describe('the example files under config/', () => {
  it('config/policies.example.json is a valid document', () => {
    const c = compilePolicies(loadPolicyFile('config/policies.example.json'));
    expect(c.rules.map((r) => r.name)).toContain('payments-free');
  });

  it('config/clients.example.json is a valid registry', () => {
    expect(ClientRegistry.fromFile('config/clients.example.json', createKeyHasher('example-secret-1234')).size).toBe(4);
    expect(JSON.parse(readFileSync('config/clients.example.json', 'utf8')).clients).toHaveLength(4);
  });
});
