import { cleanup, render, waitFor } from '@testing-library/preact'
import { afterEach, describe, expect, it } from 'vitest'
import { useLive } from '../src/live'

afterEach(cleanup)

/** Records, render by render, the input and the data shown for it. */
function Probe({ n, seen }: { n: number; seen: [number, number | undefined][] }) {
  const live = useLive(() => Promise.resolve(n * 10), [n])
  seen.push([n, live.data])
  return null
}

describe('live data', () => {
  it('is never shown for other inputs than it was loaded for', async () => {
    const seen: [number, number | undefined][] = []
    const { rerender } = render(<Probe n={1} seen={seen} />)
    await waitFor(() => expect(seen.at(-1)).toEqual([1, 10]))
    rerender(<Probe n={2} seen={seen} />)
    await waitFor(() => expect(seen.at(-1)).toEqual([2, 20]))
    expect(seen.filter(([n, data]) => n === 2 && data === 10)).toEqual([])
  })
})
