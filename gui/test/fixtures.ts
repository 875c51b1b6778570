import type { DataplaneOverview, MeshInsight, Resource } from '../src/api'

export const meshInsight = (name: string, over: Partial<MeshInsight> = {}): MeshInsight => ({
  type: 'MeshInsight',
  name,
  dataplanes: { total: 3, online: 2, offline: 1 },
  policies: { TrafficPermission: { total: 2 }, TrafficRoute: { total: 0 } },
  mTLS: { enabled: false },
  ...over,
})

export function overview(name: string, service: string, online: boolean, extra: Record<string, string> = {}): DataplaneOverview {
  return {
    type: 'DataplaneOverview',
    mesh: 'default',
    name,
    dataplane: {
      networking: {
        inbound: [{ interface: '10.0.0.1:8080:80', tags: { service, ...extra } }],
        outbound: [{ interface: ':3000', service: 'backend' }],
      },
    },
    dataplaneInsight: {
      subscriptions: [
        {
          id: `${name}-stream`,
          controlPlaneInstanceId: 'cp-1',
          connectTime: '2026-12-01T10:00:00Z',
          disconnectTime: online ? undefined : '2026-12-01T11:00:00Z',
          status: {
            lastUpdateTime: '2026-12-01T10:00:05Z',
            total: { responsesSent: '5', responsesAcknowledged: '4', responsesRejected: '1' },
            cds: { responsesSent: '2', responsesAcknowledged: '1', responsesRejected: '1' },
            lastNackMessage: 'cds: connect_timeout must be greater than 0s',
          },
        },
      ],
    },
  }
}

export const permission = (name: string, from: string, to: string): Resource => ({
  type: 'TrafficPermission',
  mesh: 'default',
  name,
  rules: [{ sources: [{ match: { service: from } }], destinations: [{ match: { service: to } }] }],
})

/** `fetch` answering each path prefix with its JSON; anything else 404s. */
export function answering(routes: Record<string, unknown>): typeof fetch {
  return (async (input: RequestInfo | URL) => {
    const url = String(input)
    const path = Object.keys(routes)
      .sort((a, b) => b.length - a.length)
      .find((p) => url.startsWith(p))
    if (path === undefined) {
      return new Response(JSON.stringify({ title: 'Not found', details: `no ${url}` }), { status: 404 })
    }
    const body = routes[path] as { total?: number } | Response
    if (body instanceof Response) return body
    // A list's count is a header, as the API sends it.
    if (body && typeof body === 'object' && 'total' in body) {
      const { total, ...page } = body
      return new Response(JSON.stringify(page), { status: 200, headers: { 'X-Total-Count': String(total) } })
    }
    return new Response(JSON.stringify(body), { status: 200 })
  }) as typeof fetch
}
