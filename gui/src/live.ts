// Live data: a page loads what it shows now and again every couple of
// seconds (LIVE_INTERVAL_MS), so changes appear without a reload. What
// was loaded for other inputs (the page before, another mesh) is never
// shown for these, not even for the one render before the new load.

import { useEffect, useState } from 'preact/hooks'

export const LIVE_INTERVAL_MS = 2000

export interface Live<T> {
  data?: T
  error?: Error
  /** When the last answer came. */
  at?: Date
}

interface Loaded<T> extends Live<T> {
  /** The inputs it was loaded for. */
  key: string
}

/** `deps` say when `load` asks for something else (as useEffect's do). */
export function useLive<T>(load: () => Promise<T>, deps: unknown[], interval = LIVE_INTERVAL_MS): Live<T> {
  const key = JSON.stringify(deps)
  const [state, setState] = useState<Loaded<T>>({ key })
  useEffect(() => {
    let current = true
    let timer: ReturnType<typeof setTimeout> | undefined
    const tick = async () => {
      try {
        const data = await load()
        if (current) setState({ key, data, at: new Date() })
      } catch (e) {
        if (current) setState((s) => (s.key === key ? { ...s, error: e as Error } : { key, error: e as Error }))
      }
      if (current) timer = setTimeout(tick, interval)
    }
    tick()
    return () => {
      current = false
      clearTimeout(timer)
    }
  }, [key])
  return state.key === key ? state : {}
}
