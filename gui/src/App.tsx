// The frame of every page: the header with the mesh's tabs, and the page
// the URL's hash names. Signing in with a user token (from the header, or
// when the API answers 401) re-renders the page so it asks the API again:
// from localhost the API takes a request without one as the admin's, and a
// token shows what that user sees.

import { useEffect, useState } from 'preact/hooks'
import { savedToken, saveToken } from './api'
import { TokenForm } from './components/common'
import { Dataplane } from './pages/Dataplane'
import { Dataplanes } from './pages/Dataplanes'
import { Overview } from './pages/Overview'
import { Policies } from './pages/Policies'
import { ServiceMap } from './pages/ServiceMap'
import { href, parse, type Route } from './route'

function useRoute(): Route {
  const [route, setRoute] = useState(() => parse(location.hash))
  useEffect(() => {
    const changed = () => setRoute(parse(location.hash))
    addEventListener('hashchange', changed)
    return () => removeEventListener('hashchange', changed)
  }, [])
  return route
}

function MeshTabs({ mesh, page }: { mesh: string; page: string }) {
  const tab = (name: string, label: string, to: string) => (
    <a href={to} class={page === name ? 'active' : ''} aria-current={page === name ? 'page' : undefined}>
      {label}
    </a>
  )
  return (
    <nav class="tabs" aria-label={`mesh ${mesh}`}>
      <span class="mesh-name">{mesh}</span>
      {tab('dataplanes', 'Dataplanes', href.dataplanes(mesh))}
      {tab('policies', 'Policies', href.policies(mesh))}
      {tab('map', 'Service map', href.map(mesh))}
    </nav>
  )
}

export function App() {
  const route = useRoute()
  const [session, setSession] = useState(0)
  const [signingIn, setSigningIn] = useState(false)
  const signedIn = () => setSession((n) => n + 1)
  const page = (() => {
    switch (route.page) {
      case 'overview':
        return <Overview onSignIn={signedIn} />
      case 'dataplanes':
        return <Dataplanes mesh={route.mesh} params={route.query} onSignIn={signedIn} />
      case 'dataplane':
        return <Dataplane mesh={route.mesh} name={route.name} onSignIn={signedIn} />
      case 'policies':
        return <Policies mesh={route.mesh} onSignIn={signedIn} />
      case 'map':
        return <ServiceMap mesh={route.mesh} onSignIn={signedIn} />
      case 'missing':
        return (
          <p>
            Nothing here. <a href={href.overview()}>Back to the meshes</a>
          </p>
        )
    }
  })()
  return (
    <>
      <header class="top">
        <a class="brand" href={href.overview()}>
          <img src="./favicon.svg" alt="" width="24" height="24" /> Kuma
        </a>
        {'mesh' in route && <MeshTabs mesh={route.mesh} page={route.page === 'dataplane' ? 'dataplanes' : route.page} />}
        <div class="who">
          {savedToken() ? (
            <button
              type="button"
              onClick={() => {
                saveToken(null)
                signedIn()
              }}
            >
              Sign out
            </button>
          ) : signingIn ? (
            <TokenForm
              onSaved={() => {
                setSigningIn(false)
                signedIn()
              }}
            />
          ) : (
            <button type="button" onClick={() => setSigningIn(true)}>
              Sign in with a token
            </button>
          )}
        </div>
      </header>
      <main key={session}>{page}</main>
    </>
  )
}
