// Who may talk to whom in a mesh: services (the `service` tags of its
// dataplanes' inbounds) as nodes; an edge for each source → destination a
// TrafficPermission's rules allow, and for each destination of a TrafficRoute's split,
// labelled with the shares of the weight its subsets get. `*` stands for every service.

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

export function buildServiceMap(
  dataplanes: DataplaneSpec[],
  permissions: Resource[],
  routes: Resource[],
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
