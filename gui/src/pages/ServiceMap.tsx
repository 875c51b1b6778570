// Who may talk to whom in a mesh, drawn: services on a circle, an arrow
// for each permitted source → destination and, dashed with its share,
// each destination of a TrafficRoute's split.

import { api, type DataplaneSpec, type Resource } from '../api'
import { Loading, Problem } from '../components/common'
import { useLive } from '../live'
import { buildServiceMap, layout, type ServiceMap as Map } from '../servicemap'

const SIZE = 640

async function load(mesh: string): Promise<Map> {
  // Plain dataplanes, not their insights: only their tags matter here.
  const [dataplanes, permissions, routes, meshPermissions, tcpRoutes, httpRoutes] = await Promise.all([
    api.all<Resource & DataplaneSpec>(mesh, 'dataplanes'),
    api.all(mesh, 'traffic-permissions'),
    api.all(mesh, 'traffic-routes'),
    api.all(mesh, 'meshtrafficpermissions'),
    api.all(mesh, 'meshtcproutes'),
    api.all(mesh, 'meshhttproutes'),
  ])
  return buildServiceMap(dataplanes, permissions, routes, meshPermissions, [...tcpRoutes, ...httpRoutes])
}

/** The point `gap` short of `to` on the line from `from`. */
function shorten(from: { x: number; y: number }, to: { x: number; y: number }, gap: number) {
  const dx = to.x - from.x
  const dy = to.y - from.y
  const length = Math.hypot(dx, dy) || 1
  return { x: to.x - (dx / length) * gap, y: to.y - (dy / length) * gap }
}

/** A vector of `length` at a right angle to the line from → to. */
function normal(from: { x: number; y: number }, to: { x: number; y: number }, length: number) {
  const dx = to.x - from.x
  const dy = to.y - from.y
  const l = Math.hypot(dx, dy) || 1
  return { x: (-dy / l) * length, y: (dx / l) * length }
}

export function ServiceMap({ mesh, onSignIn }: { mesh: string; onSignIn: () => void }) {
  const live = useLive(() => load(mesh), [mesh])
  if (live.error && !live.data) return <Problem error={live.error} onSignIn={onSignIn} />
  if (!live.data) return <Loading />
  const map = live.data
  const placed = layout(map.services, SIZE)
  const at = Object.fromEntries(placed.map((p) => [p.service, p]))
  return (
    <section>
      <h1>Service map of {mesh}</h1>
      <p class="legend">
        <span class="edge-permission">→ allowed by a (Mesh)TrafficPermission</span>
        <span class="edge-route">⇢ routed by a TrafficRoute, MeshTCPRoute or MeshHTTPRoute (share of the split)</span>
      </p>
      {map.services.length === 0 ? (
        <p class="muted">No services yet.</p>
      ) : (
        <svg class="service-map" viewBox={`0 0 ${SIZE} ${SIZE}`} role="img" aria-label={`service map of ${mesh}`}>
          <defs>
            <marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">
              <path d="M 0 0 L 10 5 L 0 10 z" />
            </marker>
          </defs>
          {map.edges.map((e) => {
            const from = at[e.from]
            const to = at[e.to]
            const key = `${e.kind}-${e.policy}-${e.from}-${e.to}`
            if (e.from === e.to) {
              return (
                <path
                  key={key}
                  class={`edge ${e.kind}`}
                  data-edge={`${e.from}->${e.to}`}
                  d={`M ${from.x - 10} ${from.y - 26} C ${from.x - 40} ${from.y - 80}, ${from.x + 40} ${from.y - 80}, ${from.x + 10} ${from.y - 26}`}
                  marker-end="url(#arrow)"
                >
                  <title>{`${e.policy}: ${e.from} → ${e.to}`}</title>
                </path>
              )
            }
            // A route beside the permission of the same pair, not on it.
            const shift = e.kind === 'route' ? normal(from, to, 10) : { x: 0, y: 0 }
            const start = { x: from.x + shift.x, y: from.y + shift.y }
            const end = shorten(start, { x: to.x + shift.x, y: to.y + shift.y }, 30)
            return (
              <g key={key} class={`edge ${e.kind}`} data-edge={`${e.from}->${e.to}`}>
                <line x1={start.x} y1={start.y} x2={end.x} y2={end.y} marker-end="url(#arrow)">
                  <title>{`${e.policy}: ${e.from} → ${e.to}`}</title>
                </line>
                {e.split && (
                  <text x={(start.x + end.x) / 2 + shift.x * 2} y={(start.y + end.y) / 2 + shift.y * 2} class="weight" text-anchor="middle">
                    {e.split}
                  </text>
                )}
              </g>
            )
          })}
          {placed.map((p) => (
            <g key={p.service} class="node" data-service={p.service}>
              <circle cx={p.x} cy={p.y} r="24" />
              <text x={p.x} y={p.y + 42} text-anchor="middle">
                {p.service}
              </text>
            </g>
          ))}
        </svg>
      )}
      <ul class="edge-list">
        {map.edges.map((e) => (
          <li key={`${e.kind}-${e.policy}-${e.from}-${e.to}`}>
            {e.from} → {e.to}{' '}
            <span class="muted">
              ({e.kind === 'route' ? `route ${e.policy}: ${e.split}` : `permission ${e.policy}`})
            </span>
          </li>
        ))}
      </ul>
    </section>
  )
}
