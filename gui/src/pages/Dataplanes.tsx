// A mesh's dataplanes, a page at a time (the API pages them, so 10,000
// cost what 100 do), filtered by tags and status on the server.

import { useEffect, useState } from 'preact/hooks'
import { api, type Tags } from '../api'
import { Loading, Problem, Status, TagList } from '../components/common'
import { useLive } from '../live'
import { href } from '../route'
import { ago, isOnline, lastConnected, lastUpdated, rejected } from '../status'

export const PAGE_SIZE = 100

/** `service:web version:2` (spaces or commas between) → tags. */
export function parseTags(text: string): Tags | string {
  const tags: Tags = {}
  for (const part of text.split(/[\s,]+/).filter(Boolean)) {
    const at = part.indexOf(':')
    if (at <= 0 || at === part.length - 1) return `"${part}" is not key:value, e.g. service:web`
    tags[part.slice(0, at)] = part.slice(at + 1)
  }
  return tags
}

type StatusFilter = '' | 'online' | 'offline'

function query(tags: string, status: StatusFilter, page: number): URLSearchParams {
  const q = new URLSearchParams()
  if (tags.trim()) q.set('tags', tags.trim())
  if (status) q.set('status', status)
  if (page > 0) q.set('page', String(page))
  return q
}

export function Dataplanes({ mesh, params, onSignIn }: { mesh: string; params: URLSearchParams; onSignIn: () => void }) {
  const tagText = params.get('tags') ?? ''
  const status = (params.get('status') ?? '') as StatusFilter
  const page = Math.max(0, Number(params.get('page') ?? 0) || 0)
  const tags = parseTags(tagText)
  // What the input shows follows the URL (another mesh, back and forward).
  const [draft, setDraft] = useState(tagText)
  useEffect(() => setDraft(tagText), [mesh, tagText])
  const live = useLive(
    () =>
      typeof tags === 'string'
        ? Promise.reject(new Error(tags))
        : api.dataplanes(mesh, { offset: page * PAGE_SIZE, size: PAGE_SIZE, tags, status: status || undefined }),
    [mesh, tagText, status, page],
  )
  const go = (t: string, s: StatusFilter, p: number) => {
    location.hash = href.dataplanes(mesh, query(t, s, p))
  }
  const now = live.at ?? new Date()
  const data = live.data
  return (
    <section>
      <h1>Dataplanes of {mesh}</h1>
      <form
        class="filters"
        onSubmit={(e) => {
          e.preventDefault()
          go(draft, status, 0)
        }}
      >
        <label>
          Tags
          <input
            name="tags"
            value={draft}
            placeholder="service:web version:2"
            onInput={(e) => setDraft((e.target as HTMLInputElement).value)}
          />
        </label>
        <label>
          Status
          <select name="status" value={status} onChange={(e) => go(draft, (e.target as HTMLSelectElement).value as StatusFilter, 0)}>
            <option value="">any</option>
            <option value="online">online</option>
            <option value="offline">offline</option>
          </select>
        </label>
        <button type="submit">Filter</button>
      </form>
      {live.error && !data && <Problem error={live.error} onSignIn={onSignIn} />}
      {!live.error && !data && <Loading />}
      {data && (
        <>
          <table class="dataplanes">
            <thead>
              <tr>
                <th>Name</th>
                <th>Status</th>
                <th>Tags</th>
                <th>Last connected</th>
                <th>Last updated</th>
                <th>NACKs</th>
              </tr>
            </thead>
            <tbody>
              {data.items.map((dp) => {
                const insight = dp.dataplaneInsight
                const inboundTags = Object.assign(
                  {},
                  dp.dataplane.networking.gateway?.tags,
                  ...(dp.dataplane.networking.inbound ?? []).map((i) => i.tags),
                )
                return (
                  <tr key={dp.name} data-dataplane={dp.name}>
                    <td>
                      <a href={href.dataplane(mesh, dp.name)}>{dp.name}</a>
                    </td>
                    <td>
                      <Status online={isOnline(insight)} />
                    </td>
                    <td>
                      <TagList tags={inboundTags} />
                    </td>
                    <td>{ago(lastConnected(insight), now)}</td>
                    <td>{ago(lastUpdated(insight), now)}</td>
                    <td class={rejected(insight) ? 'nacks' : ''}>{rejected(insight)}</td>
                  </tr>
                )
              })}
            </tbody>
          </table>
          {data.items.length === 0 && <p>No dataplane matches.</p>}
          <nav class="pager">
            <button type="button" disabled={page === 0} onClick={() => go(tagText, status, page - 1)}>
              Previous
            </button>
            <span data-field="range">
              {data.total === 0 ? 0 : page * PAGE_SIZE + 1}–{page * PAGE_SIZE + data.items.length} of {data.total}
            </span>
            <button type="button" disabled={!data.next} onClick={() => go(tagText, status, page + 1)}>
              Next
            </button>
          </nav>
        </>
      )}
    </section>
  )
}
