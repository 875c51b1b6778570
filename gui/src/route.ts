// The GUI's places, kept in the URL's hash (#/meshes/default/dataplanes):
// links can be shared and the browser's back button works, and kuma-cp
// serves one page for all of them.

export type Route =
  | { page: 'overview' }
  | { page: 'dataplanes'; mesh: string; query: URLSearchParams }
  | { page: 'dataplane'; mesh: string; name: string }
  | { page: 'policies'; mesh: string }
  | { page: 'map'; mesh: string }
  | { page: 'missing'; hash: string }

export function parse(hash: string): Route {
  const [path, search = ''] = hash.replace(/^#/, '').split('?', 2)
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent)
  if (parts.length === 0) return { page: 'overview' }
  if (parts[0] === 'meshes' && parts.length >= 3) {
    const mesh = parts[1]
    if (parts[2] === 'dataplanes' && parts.length === 3) {
      return { page: 'dataplanes', mesh, query: new URLSearchParams(search) }
    }
    if (parts[2] === 'dataplanes' && parts.length === 4) return { page: 'dataplane', mesh, name: parts[3] }
    if (parts[2] === 'policies' && parts.length === 3) return { page: 'policies', mesh }
    if (parts[2] === 'map' && parts.length === 3) return { page: 'map', mesh }
  }
  return { page: 'missing', hash }
}

const enc = encodeURIComponent

export const href = {
  overview: () => '#/',
  dataplanes: (mesh: string, query?: URLSearchParams) => {
    const q = query?.toString()
    return `#/meshes/${enc(mesh)}/dataplanes${q ? `?${q}` : ''}`
  },
  dataplane: (mesh: string, name: string) => `#/meshes/${enc(mesh)}/dataplanes/${enc(name)}`,
  policies: (mesh: string) => `#/meshes/${enc(mesh)}/policies`,
  map: (mesh: string) => `#/meshes/${enc(mesh)}/map`,
}
