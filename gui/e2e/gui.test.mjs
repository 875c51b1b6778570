// The GUI in real Chromium (Debian's, driven by playwright-core) against a
// real kuma-cp that tests/gui.rs started and seeded: two meshes, mTLS in
// one, dataplanes online (real kuma-dp and Envoy) and offline, policies.
// Run by `cargo test --test gui`, which passes:
//   KUMA_GUI_URL          the HTTP API's base URL (the GUI is at /gui/)
//   KUMA_GUI_OFFLINE_PID  a kuma-dp to stop while the GUI watches
//   KUMA_GUI_TEAM_TOKEN   a user token of a team that may read `payments` only
//   KUMA_GUI_SCREENSHOTS  where each view's screenshot goes
//   CHROMIUM              the browser (default /usr/bin/chromium)

import assert from 'node:assert/strict'
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { after, before, test } from 'node:test'
import { chromium } from 'playwright-core'

const base = process.env.KUMA_GUI_URL ?? 'http://localhost:5681'
const shots = process.env.KUMA_GUI_SCREENSHOTS ?? join(process.cwd(), '..', 'target', 'gui-screenshots')
const WAIT = { timeout: 15_000 }

let context
let page
let profile
const consoleErrors = []

before(async () => {
  mkdirSync(shots, { recursive: true })
  profile = mkdtempSync(join(tmpdir(), 'kuma-gui-chromium-'))
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    viewport: { width: 1280, height: 900 },
    args: [
      '--no-sandbox',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
    ],
  })
  page = context.pages()[0] ?? (await context.newPage())
  page.on('console', (m) => {
    if (m.type() === 'error') consoleErrors.push(`${page.url()}: ${m.text()}`)
  })
  page.on('pageerror', (e) => consoleErrors.push(`${page.url()}: ${e.message}`))
})

after(async () => {
  await context?.close()
  rmSync(profile, { recursive: true, force: true, maxRetries: 5 })
})

const text = (selector) => page.locator(selector).first().innerText(WAIT)

async function eventuallyText(selector, pattern, timeout = 15_000) {
  const deadline = Date.now() + timeout
  let last = ''
  while (Date.now() < deadline) {
    last = await page
      .locator(selector)
      .first()
      .innerText({ timeout: 1000 })
      .catch(() => '')
    if (pattern.test(last)) return last
    await page.waitForTimeout(200)
  }
  assert.fail(`${selector} never matched ${pattern} at ${page.url()}; last: ${JSON.stringify(last)}`)
}

const shot = (name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true })

test('the overview shows both meshes with their counts, mTLS and policies', async () => {
  await page.goto(`${base}/gui/`)
  await eventuallyText('[data-mesh="default"] [data-count="online"]', /^2 online$/)
  assert.equal(await text('[data-mesh="default"] [data-count="offline"]'), '2 offline')
  assert.equal(await text('[data-mesh="default"] [data-count="total"]'), '4 total')
  assert.equal(await text('[data-mesh="default"] [data-field="mtls"]'), 'off')
  assert.equal((await text('[data-mesh="default"] [data-kind="TrafficRoute"]')).replace(/\s+/g, ' '), 'TrafficRoute 1')
  assert.equal((await text('[data-mesh="default"] [data-kind="ProxyTemplate"]')).replace(/\s+/g, ' '), 'ProxyTemplate 1')
  await eventuallyText('[data-mesh="payments"] [data-count="online"]', /^1 online$/)
  assert.equal(await text('[data-mesh="payments"] [data-count="offline"]'), '1 offline')
  assert.match(await text('[data-mesh="payments"] [data-field="mtls"]'), /^on · CA age \d+[sm], expires in 9y$/)
  assert.equal((await text('[data-mesh="payments"] [data-kind="TrafficPermission"]')).replace(/\s+/g, ' '), 'TrafficPermission 1')
  await shot('overview')
})

test('the dataplanes of a mesh are filtered by status and by tag', async () => {
  await page.goto(`${base}/gui/#/meshes/default/dataplanes`)
  await eventuallyText('[data-field="range"]', /^1–4 of 4$/)
  assert.match(await text('[data-dataplane="client-1"]'), /Online/)
  assert.match(await text('[data-dataplane="legacy-1"]'), /Offline/)
  assert.match(await text('[data-dataplane="client-1"]'), /\b1\s*$/, 'the NACK is counted')
  await shot('dataplanes')
  await page.selectOption('select[name="status"]', 'offline')
  await eventuallyText('[data-field="range"]', /^1–2 of 2$/)
  assert.equal(await page.locator('[data-dataplane="client-1"]').count(), 0)
  await page.selectOption('select[name="status"]', '')
  await page.fill('input[name="tags"]', 'version:2')
  await page.click('.filters button[type="submit"]')
  await eventuallyText('[data-field="range"]', /^1–1 of 1$/)
  assert.equal(await page.locator('tbody tr').count(), 1)
  assert.match(await text('tbody tr'), /echo-2/)
})

test('10,000 dataplanes come a page at a time', async () => {
  await page.goto(`${base}/gui/#/meshes/large/dataplanes`)
  await eventuallyText('[data-field="range"]', /^1–100 of 10000$/)
  assert.equal(await page.locator('tbody tr').count(), 100)
  assert.match(await text('tbody tr'), /dp-00000/)
  await page.click('text=Next')
  await eventuallyText('[data-field="range"]', /^101–200 of 10000$/)
  assert.match(await text('tbody tr'), /dp-00100/)
  await page.selectOption('select[name="status"]', 'offline')
  await eventuallyText('[data-field="range"]', /^1–100 of 10000$/)
  await page.fill('input[name="tags"]', 'service:svc-7')
  await page.click('.filters button[type="submit"]')
  await eventuallyText('[data-field="range"]', /^1–100 of 500$/)
})

test('clicking mesh, then dataplane, shows its streams, NACK, policies and config', async () => {
  await page.goto(`${base}/gui/`)
  await page.click('[data-mesh="default"] h2 a')
  await page.click('[data-dataplane="client-1"] a', WAIT)
  await page.waitForURL(/#\/meshes\/default\/dataplanes\/client-1$/)
  await eventuallyText('h1', /client-1\s*Online/)
  assert.match(await text('table.outbounds'), /echo/)
  assert.match(await text('table.inbounds'), /service: client/)
  await eventuallyText('.nack-message', /Last NACK: cds: [\s\S]*ConnectTimeout: value must be greater than 0s/)
  assert.match(await text('[data-type="CDS"]'), /^CDS\s+\d+\s+\d+\s+[1-9]\d*$/)
  await eventuallyText('[aria-label="matched policies"]', /TrafficRoute:[\s\S]*name: split/)
  await page.click('[data-xds-type="clusters"] > summary', WAIT)
  // The route's subsets are clusters of their own.
  await page.click('[data-xds-type="clusters"] details:has(summary:text-is("echo{version=2}")) > summary', WAIT)
  await eventuallyText('[aria-label="clusters echo{version=2}"]', /name: echo\{version=2\}/)
  await shot('dataplane')
})

test('a dataplane of an mTLS mesh shows its certificate and the MeshTrafficPermission rules it got', async () => {
  await page.goto(`${base}/gui/#/meshes/payments/dataplanes/ledger-1`)
  await eventuallyText('[data-section="certificate"]', /spiffe:\/\/payments\/ledger[\s\S]*Expires[\s\S]*\(in \d+[hd]\)/)
  await eventuallyText(
    '[aria-label="matched policies"]',
    /MeshTrafficPermission:[\s\S]*name: ledger-clients[\s\S]*action: Allow[\s\S]*origins:[\s\S]*ledger-clients/,
  )
})

test('today\'s policies have their own sections, and the service map draws their edges', async () => {
  await page.goto(`${base}/gui/#/meshes/payments/policies`)
  await eventuallyText('[data-kind="MeshTrafficPermission"] [data-policy="ledger-clients"] .yaml', /kind: MeshService[\s\S]*action: Allow/)
  assert.match(await text('[data-kind="MeshHTTPRoute"] h2'), /\(0\)/)
  await page.goto(`${base}/gui/#/meshes/payments/map`)
  await page.waitForSelector('svg.service-map .edge.permission[data-edge="ledger->ledger"]', WAIT)
  // The MeshTrafficPermission's edge; the TrafficPermission it retires draws none.
  const edges = await text('ul.edge-list')
  assert.match(edges, /ledger → ledger \(permission ledger-clients\)/)
  assert.doesNotMatch(edges, /ledger-itself/)
})

test('the policies of a mesh are shown as YAML', async () => {
  await page.goto(`${base}/gui/#/meshes/default/policies`)
  await eventuallyText('[data-policy="client-to-echo"] .yaml', /type: TrafficPermission[\s\S]*sources:[\s\S]*service: client/)
  assert.match(await text('[data-policy="split"] .yaml'), /weight: 80/)
  assert.match(await text('[data-kind="TrafficLog"] h2'), /\(0\)/)
  await shot('policies')
})

test('the service map draws who may talk to whom and the route split', async () => {
  await page.goto(`${base}/gui/#/meshes/default/map`)
  await page.waitForSelector('svg.service-map [data-service="echo"]', WAIT)
  assert.equal(await page.locator('svg.service-map [data-service="client"]').count(), 1)
  assert.equal(await page.locator('svg.service-map g.edge.permission[data-edge="client->echo"]').count(), 1)
  const split = await page.locator('svg.service-map g.edge.route[data-edge="client->echo"]').textContent(WAIT)
  assert.match(split, /version:1 80%, version:2 20%/)
  assert.equal(await page.locator('svg.service-map [data-edge="echo->client"]').count(), 0, 'nothing lets echo call client')
  await shot('service-map')
})

test('a dataplane that goes offline turns offline without a reload', async () => {
  await page.goto(`${base}/gui/#/meshes/default/dataplanes`)
  await eventuallyText('[data-dataplane="echo-1"]', /Online/)
  await page.evaluate(() => {
    window.__sameDocument = true
  })
  process.kill(Number(process.env.KUMA_GUI_OFFLINE_PID), 'SIGTERM')
  await eventuallyText('[data-dataplane="echo-1"]', /Offline/, 20_000)
  assert.equal(await page.evaluate(() => window.__sameDocument), true, 'the page was not reloaded')
})

test('a team signed in with its token sees its mesh only', async () => {
  await page.goto(`${base}/gui/`)
  await page.click('text=Sign in with a token')
  await page.fill('header input[type="password"]', process.env.KUMA_GUI_TEAM_TOKEN ?? '')
  await page.click('header button[type="submit"]')
  await page.waitForSelector('[data-mesh="payments"]', WAIT)
  assert.equal(await page.locator('[data-mesh="default"]').count(), 0)
  await page.click('text=Sign out')
  await page.goto(`${base}/gui/`)
  await page.waitForSelector('[data-mesh="default"]', WAIT)
})

test('no page wrote an error to the console', () => {
  assert.deepEqual(consoleErrors, [])
})
