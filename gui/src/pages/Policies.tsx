// A mesh's policies of every kind, each as the YAML `kumactl get` and
// `kumactl apply` speak.

import { api, POLICY_COLLECTIONS, type Resource } from '../api'
import { Loading, Problem, Yaml } from '../components/common'
import { useLive } from '../live'

async function everyKind(mesh: string): Promise<[string, Resource[]][]> {
  return Promise.all(
    Object.entries(POLICY_COLLECTIONS).map(async ([kind, collection]) => {
      const items = await api.all(mesh, collection)
      return [kind, items] as [string, Resource[]]
    }),
  )
}

export function Policies({ mesh, onSignIn }: { mesh: string; onSignIn: () => void }) {
  const live = useLive(() => everyKind(mesh), [mesh])
  if (live.error && !live.data) return <Problem error={live.error} onSignIn={onSignIn} />
  if (!live.data) return <Loading />
  return (
    <section>
      <h1>Policies of {mesh}</h1>
      {live.data.map(([kind, items]) => (
        <section key={kind} class="policy-kind" data-kind={kind}>
          <h2>
            {kind} <span class="muted">({items.length})</span>
          </h2>
          {items.length === 0 && <p class="muted">None.</p>}
          {items.map((p) => (
            <article key={p.name} class="card policy" data-policy={p.name}>
              <h3>{p.name}</h3>
              <Yaml value={p} label={`${kind} ${p.name}`} />
            </article>
          ))}
        </section>
      ))}
    </section>
  )
}
