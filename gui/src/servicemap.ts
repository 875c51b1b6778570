// Who may talk to whom in a mesh: services (the `service` tags of its
// dataplanes' inbounds) as nodes; an edge for each source → destination a
// TrafficPermission's rules allow, and for each destination of a TrafficRoute's split,
// labelled with the shares of the weight its subsets get. `*` stands for every service.
// Today's policies draw the same edges: a MeshTrafficPermission's allowed
// clients (the last item naming a client decides, policies least specific
// first, as the control plane merges them), a MeshTCPRoute's or
// MeshHTTPRoute's backends.

import type { DataplaneSpec, Resource, Tags } from './api'

export interface Edge {
  from: string
  to: string
  kind: 'permission' | 'route'
  /** The policy that makes the edge. */
  policy: string
  /** A route's shares of the split for this destination: `version:1 80%, version:2 20%`. */
  split?: string
}

export interface ServiceMap {
  services: string[]
  edges: Edge[]
}

interface Selector {
  match?: Tags
}

function selected(list: Selector[] | undefined): string[] {
  return (list ?? []).map((s) => s.match?.service ?? '*')
}

interface Rule {
  sources?: Selector[]
  destinations?: Selector[]
}

/** (sources, destinations) of each rule of a permission; a route's own. */
function rulesOf(policy: Resource): [string[], string[]][] {
  const rules = (policy.rules as Rule[] | undefined) ?? [policy as Rule]
  return rules.map((r) => [selected(r.sources), selected(r.destinations)])
}

function expand(service: string, services: string[]): string[] {
  return service === '*' ? services : [service]
}

export function servicesOf(dataplanes: DataplaneSpec[]): string[] {
  const found = new Set<string>()
  for (const dp of dataplanes) {
    for (const inbound of dp.networking.inbound ?? []) {
      if (inbound.tags.service) found.add(inbound.tags.service)
    }
    const gateway = dp.networking.gateway?.tags.service
    if (gateway) found.add(gateway)
  }
  return [...found].sort()
}

interface TargetRef {
  kind: string
  name?: string
  tags?: Tags
}

/** The service a targetRef names: `*` for the whole mesh, null for a group told by other tags. */
function serviceOf(ref: TargetRef | undefined): string | null {
  if (!ref || ref.kind === 'Mesh') return '*'
  if (ref.name) return ref.name
  const service = ref.tags?.['kuma.io/service'] ?? ref.tags?.service
  return service ?? null
}

const KIND_ORDER = ['Mesh', 'Dataplane', 'MeshSubset', 'MeshGateway', 'MeshService', 'MeshExternalService', 'MeshMultiZoneService', 'MeshServiceSubset']

/** Least specific first, as the control plane orders them: by the top-level kind, then the name sorting first last. */
function ordered(policies: Resource[]): Resource[] {
  const kind = (p: Resource) => KIND_ORDER.indexOf(((p.spec as { targetRef?: TargetRef })?.targetRef ?? { kind: 'Mesh' }).kind)
  return [...policies].sort((a, b) => kind(a) - kind(b) || (a.name < b.name ? 1 : a.name > b.name ? -1 : 0))
}

interface Spec {
  targetRef?: TargetRef
  from?: { targetRef: TargetRef; default?: { action?: string } }[]
  to?: { targetRef: TargetRef; rules?: { default?: { backendRefs?: (TargetRef & { weight?: number })[] } }[] }[]
}

/** Edges of MeshTrafficPermissions: for each destination, the action the last item naming a client decides. */
function meshPermissionEdges(permissions: Resource[], all: string[], add: (e: Edge) => void) {
  for (const to of all) {
    const decided = new Map<string, [string, string]>()
    for (const p of ordered(permissions)) {
      const spec = p.spec as Spec
      const target = serviceOf(spec.targetRef)
      if (target !== '*' && target !== to) continue
      for (const item of spec.from ?? []) {
        const source = serviceOf(item.targetRef)
        if (source === null) continue
        for (const from of expand(source, all)) decided.set(from, [item.default?.action ?? 'Deny', p.name])
      }
    }
    for (const [from, [action, policy]] of decided) {
      if (action !== 'Deny') add({ from, to, kind: 'permission', policy })
    }
  }
}

/** Edges of MeshTCPRoutes and MeshHTTPRoutes: from the proxies they select to each backend, with its share. */
function meshRouteEdges(routes: Resource[], all: string[], known: Set<string>, add: (e: Edge) => void) {
  for (const r of routes) {
    const spec = r.spec as Spec
    const source = serviceOf(spec.targetRef) ?? '*'
    for (const to of spec.to ?? []) {
      for (const rule of to.rules ?? []) {
        const backends = rule.default?.backendRefs ?? []
        const sum = backends.reduce((n, b) => n + (b.weight ?? 1), 0)
        if (sum === 0) continue
        const shares = new Map<string, string[]>()
        for (const b of backends) {
          const service = b.name ?? ''
          const subset = Object.entries(b.tags ?? {}).map(([k, v]) => `${k}:${v}`).join(' ')
          const share = `${Math.round((100 * (b.weight ?? 1)) / sum)}%`
          shares.set(service, [...(shares.get(service) ?? []), subset ? `${subset} ${share}` : share])
          if (!known.has(service)) {
            known.add(service)
            all.push(service)
          }
        }
        for (const from of expand(source, all)) {
          for (const [service, parts] of shares) {
            add({ from, to: service, kind: 'route', policy: r.name, split: parts.join(', ') })
          }
        }
      }
    }
  }
}

export function buildServiceMap(
  dataplanes: DataplaneSpec[],
  permissions: Resource[],
  routes: Resource[],
  meshPermissions: Resource[] = [],
  meshRoutes: Resource[] = [],
): ServiceMap {
  const known = new Set(servicesOf(dataplanes))
  // Services a policy names exist on the map even before a dataplane serves them.
  for (const policy of [...permissions, ...routes]) {
    for (const [sources, destinations] of rulesOf(policy)) {
      for (const s of [...sources, ...destinations]) if (s !== '*') known.add(s)
    }
  }
  const all = [...known].sort()
  const edges: Edge[] = []
  const seen = new Set<string>()
  const add = (edge: Edge) => {
    const key = `${edge.kind} ${edge.policy} ${edge.from} ${edge.to}`
    if (!seen.has(key)) {
      seen.add(key)
      edges.push(edge)
    }
  }
  for (const p of permissions) {
    for (const [sources, destinations] of rulesOf(p)) {
      for (const source of sources) {
        for (const destination of destinations) {
          for (const from of expand(source, all)) {
            for (const to of expand(destination, all)) {
              add({ from, to, kind: 'permission', policy: p.name })
            }
          }
        }
      }
    }
  }
  for (const r of routes) {
    const split = (r.conf as { weight: number; destination: Tags }[] | undefined) ?? []
    const sum = split.reduce((n, part) => n + part.weight, 0)
    if (sum === 0) continue
    // One edge per destination service, labelled with its subsets' shares.
    const shares = new Map<string, string[]>()
    for (const part of split) {
      const to = part.destination.service
      if (!to) continue
      const subset = Object.entries(part.destination)
        .filter(([k]) => k !== 'service')
        .map(([k, v]) => `${k}:${v}`)
        .join(' ')
      const share = `${Math.round((100 * part.weight) / sum)}%`
      shares.set(to, [...(shares.get(to) ?? []), subset ? `${subset} ${share}` : share])
      if (!known.has(to)) {
        known.add(to)
        all.push(to)
      }
    }
    for (const source of selected(r.sources as Selector[] | undefined)) {
      for (const from of expand(source, all)) {
        for (const [to, parts] of shares) {
          add({ from, to, kind: 'route', policy: r.name, split: parts.join(', ') })
        }
      }
    }
  }
  meshRouteEdges(meshRoutes, all, known, add)
  // A MeshTrafficPermission in the mesh retires its TrafficPermissions.
  if (meshPermissions.length > 0) {
    const kept = edges.filter((e) => e.kind !== 'permission')
    edges.length = 0
    seen.clear()
    kept.forEach(add)
    meshPermissionEdges(meshPermissions, all, add)
  }
  return { services: all.sort(), edges }
}

export interface Placed {
  service: string
  x: number
  y: number
}

/** Nodes on a circle, in name order: stable as services come and go. */
export function layout(services: string[], size: number): Placed[] {
  const r = size / 2 - 70
  const c = size / 2
  if (services.length === 1) return [{ service: services[0], x: c, y: c }]
  return services.map((service, i) => {
    const angle = (2 * Math.PI * i) / services.length - Math.PI / 2
    return { service, x: c + r * Math.cos(angle), y: c + r * Math.sin(angle) }
  })
}
