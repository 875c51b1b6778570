import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/preact'
import { afterEach, describe, expect, it, vi } from 'vitest'
import { Dataplane } from '../src/pages/Dataplane'
import { Dataplanes } from '../src/pages/Dataplanes'
import { Overview } from '../src/pages/Overview'
import { answering, meshInsight, overview } from './fixtures'

afterEach(() => {
  cleanup()
  vi.unstubAllGlobals()
  sessionStorage.clear()
})

const noop = () => {}

describe('the overview', () => {
  it('shows each mesh with its counts, mTLS and CA expiry', async () => {
    vi.stubGlobal(
      'fetch',
      answering({
        '/mesh-insights': {
          total: 2,
          items: [
            meshInsight('default'),
            meshInsight('payments', {
              mTLS: { enabled: true, ca: { notBefore: new Date(Date.now() - 86400e3).toISOString(), notAfter: '2099-01-01T00:00:00Z' } },
            }),
          ],
        },
      }),
    )
    const { container } = render(<Overview onSignIn={noop} />)
    await screen.findByText('payments')
    const payments = container.querySelector('[data-mesh="payments"]')!
    expect(payments.querySelector('[data-count="online"]')!.textContent).toBe('2 online')
    expect(payments.querySelector('[data-field="mtls"]')!.textContent).toMatch(/on · CA age 1d, expires in \d+y/)
    const defaults = container.querySelector('[data-mesh="default"]')!
    expect(defaults.querySelector('[data-field="mtls"]')!.textContent).toBe('off')
    expect(defaults.querySelector('[data-kind="TrafficPermission"]')!.textContent).toBe('TrafficPermission 2')
  })

  it('asks for a token when the API wants one, and sends it', async () => {
    const seen: (string | null)[] = []
    vi.stubGlobal('fetch', (async (_: string, init: RequestInit) => {
      const auth = (init.headers as Record<string, string>).Authorization ?? null
      seen.push(auth)
      return auth
        ? new Response(JSON.stringify({ items: [] }), { headers: { 'X-Total-Count': '0' } })
        : new Response(JSON.stringify({ title: 'Unauthenticated', details: 'send a token' }), { status: 401 })
    }) as typeof fetch)
    let signedIn = 0
    render(<Overview onSignIn={() => signedIn++} />)
    const input = await screen.findByPlaceholderText(/user-token/)
    fireEvent.input(input, { target: { value: 'T0KEN' } })
    fireEvent.submit(input.closest('form')!)
    expect(signedIn).toBe(1)
    cleanup()
    render(<Overview key="again" onSignIn={noop} />)
    await screen.findByText('No mesh you may read.')
    expect(seen).toContain('Bearer T0KEN')
  })
})

describe('the dataplanes table', () => {
  it('shows status, tags and NACKs of one page and the range of the whole list', async () => {
    const asked: string[] = []
    const answer = answering({
      '/meshes/default/dataplanes+insights': {
        total: 250,
        items: [overview('web-1', 'web', true, { version: '2' }), overview('db-1', 'db', false)],
        next: 'http://x/next',
      },
    })
    vi.stubGlobal('fetch', ((input: string, init: RequestInit) => {
      asked.push(input)
      return answer(input, init)
    }) as typeof fetch)
    const { container } = render(<Dataplanes mesh="default" params={new URLSearchParams('status=online&page=1')} onSignIn={noop} />)
    await screen.findByText('web-1')
    expect(asked[0]).toContain('status=online')
    expect(asked[0]).toContain('offset=100')
    const row = container.querySelector('[data-dataplane="web-1"]')!
    expect(row.textContent).toContain('Online')
    expect(row.textContent).toContain('version: 2')
    expect(container.querySelector('[data-dataplane="db-1"]')!.textContent).toContain('Offline')
    expect(container.querySelector('[data-field="range"]')!.textContent).toBe('101–102 of 250')
  })
})

describe('one dataplane', () => {
  it('shows its subscriptions per type, the last NACK, its policies and its config', async () => {
    vi.stubGlobal(
      'fetch',
      answering({
        '/meshes/default/dataplanes+insights/web-1': overview('web-1', 'web', true),
        '/meshes/default/dataplanes/web-1/policies': { mesh: 'default', dataplane: 'web-1', TrafficTrace: null, inbound: [] },
        '/meshes/default/dataplanes/web-1/xds': {
          source: 'connected',
          clusters: [{ name: 'backend', version: 'abc', resource: { name: 'backend', type: 'EDS' } }],
        },
      }),
    )
    const { container } = render(<Dataplane mesh="default" name="web-1" onSignIn={noop} />)
    await screen.findByText(/Last NACK/)
    expect(container.querySelector('.nack-message')!.textContent).toContain('connect_timeout')
    expect(container.querySelector('[data-type="CDS"]')!.textContent).toBe('CDS211')
    await waitFor(() => expect(container.querySelector('[data-xds-type="clusters"]')).not.toBeNull())
    expect(container.querySelector('[data-xds-type="clusters"]')!.textContent).toContain('backend')
    expect(screen.getByLabelText('matched policies').textContent).toContain('TrafficTrace: null')
  })
})

describe('the dataplanes filter', () => {
  it('follows the URL when another mesh is opened', async () => {
    vi.stubGlobal('fetch', answering({ '/meshes/': { total: 0, items: [] } }))
    const { container, rerender } = render(
      <Dataplanes mesh="a" params={new URLSearchParams('tags=version:2')} onSignIn={noop} />,
    )
    const input = container.querySelector('input[name="tags"]') as HTMLInputElement
    expect(input.value).toBe('version:2')
    rerender(<Dataplanes mesh="b" params={new URLSearchParams()} onSignIn={noop} />)
    await waitFor(() => expect(input.value).toBe(''))
  })
})
