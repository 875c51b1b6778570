// The HTTP API of kuma-cp, as the GUI reads it: the same public endpoints
// kumactl uses (see docs/openapi.json), on the origin that served the GUI,
// in the dialect the API answers in (the reference's: interfaces as
// strings, a TrafficPermission's `rules`).
// A user token, when the control plane asks for one, is kept for the tab
// only (sessionStorage) and sent as `Authorization: Bearer`.

export interface Page<T> {
  items: T[]
  next?: string
  /** How many match in all: the API's `X-Total-Count` header. */
  total: number
}

export interface Counts {
  total: number
  online: number
  offline: number
}

export interface MeshInsight {
  type: 'MeshInsight'
  name: string
  dataplanes: Counts
  policies: Record<string, { total: number }>
  mTLS: { enabled: boolean; ca?: { notBefore: string; notAfter: string } }
}

export type Tags = Record<string, string>

/** `interface` is `address:port:servicePort`, as the reference writes it. */
export interface Inbound {
  interface: string
  tags: Tags
  health?: { ready: boolean }
}

/** `interface` is `[address]:port`. */
export interface Outbound {
  interface: string
  service: string
  /** Another mesh's service, through a cross-mesh gateway. */
  mesh?: string
}

export interface DataplaneSpec {
  networking: {
    address?: string
    inbound?: Inbound[]
    outbound?: Outbound[]
    gateway?: { tags: Tags }
    transparentProxying?: { redirectPortInbound?: number; redirectPortOutbound?: number }
  }
}

export interface Stats {
  responsesSent?: string
  responsesAcknowledged?: string
  responsesRejected?: string
}

export interface Subscription {
  id: string
  controlPlaneInstanceId: string
  connectTime: string
  disconnectTime?: string
  status: {
    lastUpdateTime?: string
    total?: Stats
    cds?: Stats
    eds?: Stats
    lds?: Stats
    rds?: Stats
    sds?: Stats
    lastNackMessage?: string
  }
  version?: { kumaDp?: { version: string }; envoy?: { version: string } }
}

export interface DataplaneInsight {
  subscriptions?: Subscription[]
  mTLS?: {
    certificateExpirationTime?: string
    lastCertificateRegeneration?: string
    certificateRegenerations?: number
  }
}

export interface DataplaneOverview {
  type: 'DataplaneOverview'
  mesh: string
  name: string
  dataplane: DataplaneSpec
  dataplaneInsight: DataplaneInsight
}

/** Any resource as the API answers it: identity beside its own fields. */
export interface Resource {
  type: string
  name: string
  mesh?: string
  [field: string]: unknown
}

/** An error answer of the API (every 4xx and 5xx has this shape). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly title: string,
    readonly details: string,
  ) {
    super(`${title}: ${details}`)
  }
}

const TOKEN_KEY = 'kuma-gui-token'

export function savedToken(): string | null {
  return sessionStorage.getItem(TOKEN_KEY)
}

export function saveToken(token: string | null): void {
  if (token) sessionStorage.setItem(TOKEN_KEY, token.trim())
  else sessionStorage.removeItem(TOKEN_KEY)
}

async function fetchJson(path: string): Promise<{ body: unknown; response: Response }> {
  const headers: Record<string, string> = { Accept: 'application/json' }
  const token = savedToken()
  if (token) headers.Authorization = `Bearer ${token}`
  const response = await fetch(path, { headers })
  const text = await response.text()
  if (!response.ok) {
    let title = response.statusText
    let details = text
    try {
      const body = JSON.parse(text)
      title = body.title ?? title
      details = body.details ?? text
    } catch {
      // not the API's JSON error: shown as it came
    }
    throw new ApiError(response.status, title, details)
  }
  return { body: JSON.parse(text), response }
}

export async function get<T>(path: string): Promise<T> {
  return (await fetchJson(path)).body as T
}

/** A page of a list; the body keeps the reference's shape, the count is a header. */
export async function getPage<T>(path: string): Promise<Page<T>> {
  const { body, response } = await fetchJson(path)
  const page = body as Omit<Page<T>, 'total'>
  const total = Number(response.headers.get('X-Total-Count') ?? page.items.length)
  return { ...page, total }
}

const enc = encodeURIComponent

export interface DataplaneQuery {
  offset: number
  size: number
  tags: Tags
  status?: 'online' | 'offline'
}

export function dataplanesPath(mesh: string, q: DataplaneQuery): string {
  const params = new URLSearchParams()
  for (const [k, v] of Object.entries(q.tags)) params.append('tag', `${k}:${v}`)
  if (q.status) params.set('status', q.status)
  params.set('offset', String(q.offset))
  params.set('size', String(q.size))
  return `/meshes/${enc(mesh)}/dataplanes+insights?${params}`
}

export const api = {
  meshInsights: () => getPage<MeshInsight>('/mesh-insights?size=1000'),
  mesh: (mesh: string) => get<Resource>(`/meshes/${enc(mesh)}`),
  dataplanes: (mesh: string, q: DataplaneQuery) => getPage<DataplaneOverview>(dataplanesPath(mesh, q)),
  overview: (mesh: string, name: string) =>
    get<DataplaneOverview>(`/meshes/${enc(mesh)}/dataplanes+insights/${enc(name)}`),
  explainPolicies: (mesh: string, name: string) =>
    get<Record<string, unknown>>(`/meshes/${enc(mesh)}/dataplanes/${enc(name)}/policies`),
  explainXds: (mesh: string, name: string) =>
    get<Record<string, unknown>>(`/meshes/${enc(mesh)}/dataplanes/${enc(name)}/xds`),
  /** Every item of a mesh's collection, following `next` links. */
  all: async <T extends Resource = Resource>(mesh: string, collection: string): Promise<T[]> => {
    const items: T[] = []
    let offset = 0
    for (;;) {
      const page = await getPage<T>(`/meshes/${enc(mesh)}/${collection}?size=1000&offset=${offset}`)
      items.push(...page.items)
      offset += page.items.length
      if (!page.next || page.items.length === 0) return items
    }
  },
}

/** The policy kinds of a mesh and the collection each is listed under. */
export const POLICY_COLLECTIONS: Record<string, string> = {
  TrafficPermission: 'traffic-permissions',
  TrafficRoute: 'traffic-routes',
  TrafficLog: 'traffic-logs',
  TrafficTrace: 'traffic-traces',
  ProxyTemplate: 'proxytemplates',
  MeshGateway: 'meshgateways',
  MeshGatewayRoute: 'meshgatewayroutes',
  MeshTrafficPermission: 'meshtrafficpermissions',
  MeshTLS: 'meshtlses',
  MeshHTTPRoute: 'meshhttproutes',
  MeshTCPRoute: 'meshtcproutes',
}
