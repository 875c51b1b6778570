// Every mesh the user may read: its dataplanes online and offline, mTLS
// and its CA's age and expiry, and how many policies of each kind it has.

import { api, type MeshInsight } from '../api'
import { Loading, Problem } from '../components/common'
import { useLive } from '../live'
import { href } from '../route'
import { span, until } from '../status'

function Ca({ mesh, now }: { mesh: MeshInsight; now: Date }) {
  if (!mesh.mTLS.enabled) return <span class="muted">off</span>
  const ca = mesh.mTLS.ca
  if (!ca) return <span>on, CA not generated yet</span>
  return (
    <span>
      on · CA age {span((now.getTime() - Date.parse(ca.notBefore)) / 1000)}, expires {until(ca.notAfter, now)}
    </span>
  )
}

function MeshCard({ mesh, now }: { mesh: MeshInsight; now: Date }) {
  const policies = Object.entries(mesh.policies)
  const d = mesh.dataplanes
  return (
    <article class="card mesh" data-mesh={mesh.name}>
      <h2>
        <a href={href.dataplanes(mesh.name)}>{mesh.name}</a>
      </h2>
      <dl>
        <dt>Dataplanes</dt>
        <dd class="counts">
          <span class="online" data-count="online">
            {d.online} online
          </span>
          <span class="offline" data-count="offline">
            {d.offline} offline
          </span>
          <span data-count="total">{d.total} total</span>
        </dd>
        <dt>mTLS</dt>
        <dd data-field="mtls">
          <Ca mesh={mesh} now={now} />
        </dd>
        <dt>Policies</dt>
        <dd>
          <ul class="policy-counts">
            {policies.map(([kind, { total }]) => (
              <li key={kind} class={total ? '' : 'muted'} data-kind={kind}>
                {kind} <b>{total}</b>
              </li>
            ))}
          </ul>
        </dd>
      </dl>
      <nav class="card-links">
        <a href={href.dataplanes(mesh.name)}>Dataplanes</a>
        <a href={href.policies(mesh.name)}>Policies</a>
        <a href={href.map(mesh.name)}>Service map</a>
      </nav>
    </article>
  )
}

export function Overview({ onSignIn }: { onSignIn: () => void }) {
  const live = useLive(api.meshInsights, [])
  if (live.error && !live.data) return <Problem error={live.error} onSignIn={onSignIn} />
  if (!live.data) return <Loading />
  const now = live.at ?? new Date()
  return (
    <section>
      <h1>Meshes</h1>
      {live.data.items.length === 0 && <p>No mesh you may read.</p>}
      <div class="cards">
        {live.data.items.map((mesh) => (
          <MeshCard key={mesh.name} mesh={mesh} now={now} />
        ))}
      </div>
    </section>
  )
}
