// One dataplane: its inbounds and outbounds, tags, certificate, xDS
// subscriptions with per-type ACKs and NACKs, the policies that matched it
// and the Envoy configuration it was sent (the API's explain views).

import { api, type DataplaneOverview, type Subscription } from '../api'
import { Loading, Problem, Status, TagList, Yaml } from '../components/common'
import { useLive } from '../live'
import { href } from '../route'
import { ago, isOnline, perType, until } from '../status'

function Networking({ dp }: { dp: DataplaneOverview }) {
  const n = dp.dataplane.networking
  return (
    <>
      <h2>Inbounds</h2>
      {(n.inbound ?? []).length === 0 ? (
        <p class="muted">{n.gateway ? 'A gateway: no inbounds.' : 'None.'}</p>
      ) : (
        <table class="inbounds">
          <thead>
            <tr>
              <th>Interface</th>
              <th>Ready</th>
              <th>Tags</th>
            </tr>
          </thead>
          <tbody>
            {(n.inbound ?? []).map((i) => (
              <tr key={i.interface}>
                <td>
                  <code>{i.interface}</code>
                </td>
                <td>{i.health?.ready === false ? 'no' : 'yes'}</td>
                <td>
                  <TagList tags={i.tags} />
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Outbounds</h2>
      {(n.outbound ?? []).length === 0 ? (
        <p class="muted">{n.transparentProxying ? 'Transparent proxying: every service of the mesh.' : 'None.'}</p>
      ) : (
        <table class="outbounds">
          <thead>
            <tr>
              <th>Interface</th>
              <th>Service</th>
            </tr>
          </thead>
          <tbody>
            {(n.outbound ?? []).map((o) => (
              <tr key={o.interface}>
                <td>
                  <code>{o.interface}</code>
                </td>
                <td>{o.mesh ? `${o.service} (mesh ${o.mesh})` : o.service}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </>
  )
}

function Certificate({ dp, now }: { dp: DataplaneOverview; now: Date }) {
  const mtls = dp.dataplaneInsight.mTLS
  const services = [
    ...(dp.dataplane.networking.inbound ?? []).map((i) => i.tags.service),
    dp.dataplane.networking.gateway?.tags.service,
  ].filter((s): s is string => !!s)
  return (
    <>
      <h2>Certificate</h2>
      {!mtls?.certificateExpirationTime ? (
        <p class="muted">No certificate issued (mTLS is off in the mesh, or the proxy has not connected).</p>
      ) : (
        <dl class="facts" data-section="certificate">
          <dt>SPIFFE IDs</dt>
          <dd>
            {[...new Set(services)].map((s) => (
              <code key={s}>
                spiffe://{dp.mesh}/{s}
              </code>
            ))}
          </dd>
          <dt>Expires</dt>
          <dd>
            {mtls.certificateExpirationTime} ({until(mtls.certificateExpirationTime, now)})
          </dd>
          <dt>Issued</dt>
          <dd>
            {mtls.certificateRegenerations ?? 0} times, last {ago(mtls.lastCertificateRegeneration, now)}
          </dd>
        </dl>
      )}
    </>
  )
}

function SubscriptionCard({ sub, now }: { sub: Subscription; now: Date }) {
  return (
    <article class="card subscription" data-subscription={sub.id}>
      <h3>
        <Status online={!sub.disconnectTime} /> stream {sub.id}
      </h3>
      <dl class="facts">
        <dt>Control plane</dt>
        <dd>{sub.controlPlaneInstanceId}</dd>
        <dt>Connected</dt>
        <dd>{ago(sub.connectTime, now)}</dd>
        {sub.disconnectTime && (
          <>
            <dt>Disconnected</dt>
            <dd>{ago(sub.disconnectTime, now)}</dd>
          </>
        )}
        <dt>Last update</dt>
        <dd>{ago(sub.status.lastUpdateTime, now)}</dd>
        {sub.version && (
          <>
            <dt>Versions</dt>
            <dd>
              kuma-dp {sub.version.kumaDp?.version ?? '?'}, Envoy {sub.version.envoy?.version ?? '?'}
            </dd>
          </>
        )}
      </dl>
      <table class="xds-types">
        <thead>
          <tr>
            <th>Type</th>
            <th>Sent</th>
            <th>ACK</th>
            <th>NACK</th>
          </tr>
        </thead>
        <tbody>
          {perType(sub).map((t) => (
            <tr key={t.type} data-type={t.type}>
              <td>{t.type}</td>
              <td>{t.sent}</td>
              <td>{t.acknowledged}</td>
              <td class={t.rejected ? 'nacks' : ''}>{t.rejected}</td>
            </tr>
          ))}
        </tbody>
      </table>
      {sub.status.lastNackMessage && (
        <p class="nack-message" role="note">
          Last NACK: <code>{sub.status.lastNackMessage}</code>
        </p>
      )}
    </article>
  )
}

interface XdsEntry {
  name: string
  resource: unknown
}

function EnvoyConfig({ mesh, name, onSignIn }: { mesh: string; name: string; onSignIn: () => void }) {
  const live = useLive(() => api.explainXds(mesh, name), [mesh, name])
  if (live.error && !live.data) return <Problem error={live.error} onSignIn={onSignIn} />
  if (!live.data) return <Loading />
  const { source, note, ...types } = live.data as { source?: string; note?: string } & Record<string, unknown>
  return (
    <div data-section="envoy-config">
      <p>
        Source: <b>{source}</b>
        {note && <> · {note}</>}
      </p>
      {Object.entries(types)
        .filter(([, v]) => Array.isArray(v))
        .map(([type, entries]) => (
          <details key={type} class="xds-type" data-xds-type={type}>
            <summary>
              {type} ({(entries as XdsEntry[]).length})
            </summary>
            {(entries as XdsEntry[]).map((e) => (
              <details key={e.name} class="xds-resource">
                <summary>{e.name}</summary>
                <Yaml value={e} label={`${type} ${e.name}`} />
              </details>
            ))}
          </details>
        ))}
    </div>
  )
}

function MatchedPolicies({ mesh, name, onSignIn }: { mesh: string; name: string; onSignIn: () => void }) {
  const live = useLive(() => api.explainPolicies(mesh, name), [mesh, name])
  if (live.error && !live.data) return <Problem error={live.error} onSignIn={onSignIn} />
  if (!live.data) return <Loading />
  const { mesh: _m, dataplane: _d, ...matched } = live.data
  return <Yaml value={matched} label="matched policies" />
}

export function Dataplane({ mesh, name, onSignIn }: { mesh: string; name: string; onSignIn: () => void }) {
  const live = useLive(() => api.overview(mesh, name), [mesh, name])
  if (live.error && !live.data) return <Problem error={live.error} onSignIn={onSignIn} />
  if (!live.data) return <Loading />
  const dp = live.data
  const now = live.at ?? new Date()
  const subs = [...(dp.dataplaneInsight.subscriptions ?? [])].reverse()
  return (
    <section>
      <p class="crumbs">
        <a href={href.overview()}>Meshes</a> / <a href={href.dataplanes(mesh)}>{mesh}</a> / {name}
      </p>
      <h1>
        {name} <Status online={isOnline(dp.dataplaneInsight)} />
      </h1>
      <dl class="facts">
        <dt>Mesh</dt>
        <dd>{mesh}</dd>
        {dp.dataplane.networking.address && (
          <>
            <dt>Address</dt>
            <dd>{dp.dataplane.networking.address}</dd>
          </>
        )}
        {dp.dataplane.networking.gateway && (
          <>
            <dt>Gateway</dt>
            <dd>
              <TagList tags={dp.dataplane.networking.gateway.tags} />
            </dd>
          </>
        )}
      </dl>
      <Networking dp={dp} />
      <Certificate dp={dp} now={now} />
      <h2>Subscriptions</h2>
      {subs.length === 0 ? (
        <p class="muted">Never connected.</p>
      ) : (
        subs.map((s) => <SubscriptionCard key={s.id} sub={s} now={now} />)
      )}
      <h2>Matched policies</h2>
      <MatchedPolicies mesh={mesh} name={name} onSignIn={onSignIn} />
      <h2>Envoy configuration</h2>
      <EnvoyConfig mesh={mesh} name={name} onSignIn={onSignIn} />
    </section>
  )
}
