// Live data: a page loads what it shows now and again every couple of
// seconds (LIVE_INTERVAL_MS), so changes appear without a reload. An
// answer that arrives after the inputs changed is dropped.

import { useEffect, useState } from 'preact/hooks'

export const LIVE_INTERVAL_MS = 2000

export interface Live<T> {
  data?: T
  error?: Error
  /** When the last answer came. */
  at?: Date
}

/** `deps` say when `load` asks for something else (as useEffect's do). */
export function useLive<T>(load: () => Promise<T>, deps: unknown[], interval = LIVE_INTERVAL_MS): Live<T> {
  const [state, setState] = useState<Live<T>>({})
  useEffect(() => {
    let current = true
    let timer: ReturnType<typeof setTimeout> | undefined
    setState({})
    const tick = async () => {
      try {
        const data = await load()
        if (current) setState({ data, at: new Date() })
      } catch (e) {
        if (current) setState((s) => ({ ...s, error: e as Error }))
      }
      if (current) timer = setTimeout(tick, interval)
    }
    tick()
    return () => {
      current = false
      clearTimeout(timer)
    }
  }, deps)
  return state
}
