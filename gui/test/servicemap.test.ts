import { describe, expect, it } from 'vitest'
import { buildServiceMap, layout } from '../src/servicemap'
import { overview, permission } from './fixtures'

const dataplanes = [overview('web-1', 'web', true), overview('backend-1', 'backend', true), overview('db-1', 'db', false)].map(
  (o) => o.dataplane,
)

describe('the service map', () => {
  it('has a node per service and an edge per permitted pair', () => {
    const map = buildServiceMap(dataplanes, [permission('p', 'web', 'backend')], [])
    expect(map.services).toEqual(['backend', 'db', 'web'])
    expect(map.edges).toEqual([{ from: 'web', to: 'backend', kind: 'permission', policy: 'p' }])
  })

  it('expands * to every service', () => {
    const map = buildServiceMap(dataplanes, [permission('all', '*', 'db')], [])
    expect(map.edges.map((e) => `${e.from}->${e.to}`)).toEqual(['backend->db', 'db->db', 'web->db'])
  })

  it('labels a route edge with the shares of its subsets', () => {
    const route = {
      type: 'TrafficRoute',
      name: 'split',
      sources: [{ match: { service: 'web' } }],
      destinations: [{ match: { service: 'backend' } }],
      conf: [
        { weight: 80, destination: { service: 'backend', version: '1' } },
        { weight: 20, destination: { service: 'backend', version: '2' } },
        { weight: 100, destination: { service: 'canary' } },
      ],
    }
    const map = buildServiceMap(dataplanes, [], [route])
    expect(map.services).toContain('canary')
    expect(map.edges).toEqual([
      { from: 'web', to: 'backend', kind: 'route', policy: 'split', split: 'version:1 40%, version:2 10%' },
      { from: 'web', to: 'canary', kind: 'route', policy: 'split', split: '50%' },
    ])
  })

  it('draws MeshTrafficPermissions as the control plane merges them, retiring TrafficPermissions', () => {
    const mtp = (name: string, target: object, from: object[]) => ({
      type: 'MeshTrafficPermission',
      name,
      spec: { targetRef: target, from },
    })
    const map = buildServiceMap(
      dataplanes,
      [permission('legacy', '*', '*')],
      [],
      [
        mtp('deny-all', { kind: 'Mesh' }, [{ targetRef: { kind: 'Mesh' }, default: { action: 'Deny' } }]),
        mtp('backend-clients', { kind: 'MeshService', name: 'backend' }, [
          { targetRef: { kind: 'MeshService', name: 'web' }, default: { action: 'Allow' } },
          { targetRef: { kind: 'MeshSubset', tags: { 'kuma.io/service': 'db' } }, default: { action: 'AllowWithShadowDeny' } },
        ]),
      ],
    )
    expect(map.edges.map((e) => `${e.from}->${e.to} ${e.policy}`).sort()).toEqual([
      'db->backend backend-clients',
      'web->backend backend-clients',
    ])
  })

  it('draws the backends of MeshTCPRoutes and MeshHTTPRoutes with their shares', () => {
    const route = {
      type: 'MeshTCPRoute',
      name: 'split',
      spec: {
        targetRef: { kind: 'MeshService', name: 'web' },
        to: [
          {
            targetRef: { kind: 'MeshService', name: 'backend' },
            rules: [
              {
                default: {
                  backendRefs: [
                    { kind: 'MeshServiceSubset', name: 'backend', tags: { version: '1' }, weight: 90 },
                    { kind: 'MeshServiceSubset', name: 'backend', tags: { version: '2' }, weight: 10 },
                  ],
                },
              },
            ],
          },
        ],
      },
    }
    const map = buildServiceMap(dataplanes, [], [], [], [route])
    expect(map.edges).toEqual([
      { from: 'web', to: 'backend', kind: 'route', policy: 'split', split: 'version:1 90%, version:2 10%' },
    ])
  })

  it('places every service inside the drawing', () => {
    const placed = layout(['a', 'b', 'c', 'd'], 600)
    expect(placed).toHaveLength(4)
    for (const p of placed) {
      expect(p.x).toBeGreaterThan(0)
      expect(p.x).toBeLessThan(600)
      expect(p.y).toBeGreaterThan(0)
      expect(p.y).toBeLessThan(600)
    }
  })
})
