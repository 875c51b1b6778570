// Small pieces every page uses: tags as chips, the status badge, YAML
// blocks and how an error of the API is shown (with the token form when
// the control plane asks who the user is).

import { useState } from 'preact/hooks'
import { stringify } from 'yaml'
import { ApiError, saveToken, savedToken, type Tags } from '../api'

export function TagList({ tags }: { tags: Tags }) {
  return (
    <span class="tags">
      {Object.entries(tags)
        .sort(([a], [b]) => a.localeCompare(b))
        .map(([k, v]) => (
          <span class="tag" key={k}>
            {k}: {v}
          </span>
        ))}
    </span>
  )
}

export function Status({ online }: { online: boolean }) {
  return <span class={`status ${online ? 'online' : 'offline'}`}>{online ? 'Online' : 'Offline'}</span>
}

export function Yaml({ value, label }: { value: unknown; label?: string }) {
  return (
    <pre class="yaml" aria-label={label}>
      {stringify(value, { sortMapEntries: false, lineWidth: 0 })}
    </pre>
  )
}

/** The token form: a user token kept for this tab. */
export function TokenForm({ onSaved }: { onSaved: () => void }) {
  const [token, setToken] = useState(savedToken() ?? '')
  return (
    <form
      class="token"
      onSubmit={(e) => {
        e.preventDefault()
        saveToken(token)
        onSaved()
      }}
    >
      <label>
        User token
        <input
          type="password"
          value={token}
          placeholder="kumactl generate user-token --name NAME"
          onInput={(e) => setToken((e.target as HTMLInputElement).value)}
        />
      </label>
      <button type="submit">Sign in</button>
    </form>
  )
}

export function Problem({ error, onSignIn }: { error: Error; onSignIn: () => void }) {
  if (error instanceof ApiError && error.status === 401) {
    return (
      <div class="problem" role="alert">
        <h2>Sign in</h2>
        <p>This control plane asks who you are: paste a user token.</p>
        <TokenForm onSaved={onSignIn} />
      </div>
    )
  }
  const title = error instanceof ApiError ? `${error.title} (${error.status})` : 'Cannot reach the control plane'
  const details = error instanceof ApiError ? error.details : error.message
  return (
    <div class="problem" role="alert">
      <h2>{title}</h2>
      <p>{details}</p>
    </div>
  )
}

export function Loading() {
  return <p class="loading">Loading…</p>
}
