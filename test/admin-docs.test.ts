/**
 * The admin API's documentation: the OpenAPI document validates against the
 * OpenAPI 3.1 schema, and the docs page, served offline from the installed
 * swagger-ui-dist, lists every endpoint in real headless Chromium (Debian's
 * `chromium`, driven by playwright-core; nothing downloads a browser).
 */
import { existsSync } from 'node:fs';
import { Validator } from '@seriousme/openapi-schema-validator';
import { chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Node, startNode } from './helpers/service.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
let node: Node;
let spec: { paths: Record<string, Record<string, unknown>> };

beforeAll(async () => {
  node = await startNode({ ADMIN_TOKENS: 'ops:docs-test-secret-12345' });
  spec = (await (await fetch(`${node.adminUrl}/admin/openapi.json`)).json()) as typeof spec;
});
afterAll(async () => {
  await node?.close(1000);
});

describe('admin API documentation', () => {
  it('is a valid OpenAPI 3.1 document', async () => {
    const result = await new Validator().validate(spec as never);
    expect(result.errors ?? []).toEqual([]);
    expect(result.valid).toBe(true);
  });

  it('lists every endpoint on the docs page, rendered in headless Chromium with no network', async () => {
    expect(existsSync(CHROMIUM), `${CHROMIUM} is missing: apt-get install chromium`).toBe(true);
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await browser.newPage();
      const offsite: string[] = [];
      page.on('request', (r) => {
        if (!r.url().startsWith(node.adminUrl)) offsite.push(r.url());
      });
      await page.goto(`${node.adminUrl}/admin/docs`);
      await page.waitForSelector('.opblock', { timeout: 15_000 });
      const listed = await page.$$eval('.opblock-summary', (els) =>
        els.map((e) => `${e.querySelector('.opblock-summary-method')?.textContent?.trim()} ${e.querySelector('.opblock-summary-path')?.getAttribute('data-path')}`),
      );
      const expected = Object.entries(spec.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`));
      expect(expected.length).toBe(10);
      for (const e of expected) expect(listed).toContain(e);
      expect(offsite).toEqual([]); // every asset from the service itself
    } finally {
      await browser.close();
    }
  }, 60_000);
});
