// What a dataplane's insight says, in the words of the tables: online or
// not, when it last connected and was configured, what Envoy rejected.
// Kuma counts a dataplane online while any of its xDS streams is open.

import type { DataplaneInsight, Stats, Subscription } from './api'

export function isOnline(insight: DataplaneInsight): boolean {
  return (insight.subscriptions ?? []).some((s) => !s.disconnectTime)
}

/** The subscription that connected last. */
export function latest(insight: DataplaneInsight): Subscription | undefined {
  const subs = insight.subscriptions ?? []
  return subs.reduce<Subscription | undefined>(
    (last, s) => (!last || s.connectTime > last.connectTime ? s : last),
    undefined,
  )
}

export function lastConnected(insight: DataplaneInsight): string | undefined {
  return latest(insight)?.connectTime
}

/** When the proxy last got configuration, over all its streams. */
export function lastUpdated(insight: DataplaneInsight): string | undefined {
  return (insight.subscriptions ?? [])
    .map((s) => s.status.lastUpdateTime)
    .filter((t): t is string => !!t)
    .sort()
    .pop()
}

const count = (v?: string) => Number(v ?? 0)

/** Responses Envoy rejected (NACKs), over all streams. */
export function rejected(insight: DataplaneInsight): number {
  return (insight.subscriptions ?? []).reduce((n, s) => n + count(s.status.total?.responsesRejected), 0)
}

export function lastNack(insight: DataplaneInsight): string | undefined {
  return latest(insight)?.status.lastNackMessage
}

export interface TypeCounts {
  type: string
  sent: number
  acknowledged: number
  rejected: number
}

/** Per xDS type of a subscription: sent, ACKed and NACKed responses. */
export function perType(sub: Subscription): TypeCounts[] {
  const types: [string, Stats | undefined][] = [
    ['CDS', sub.status.cds],
    ['EDS', sub.status.eds],
    ['LDS', sub.status.lds],
    ['RDS', sub.status.rds],
    ['SDS', sub.status.sds],
  ]
  return types.map(([type, s]) => ({
    type,
    sent: count(s?.responsesSent),
    acknowledged: count(s?.responsesAcknowledged),
    rejected: count(s?.responsesRejected),
  }))
}

const UNITS: [number, string][] = [
  [365 * 24 * 3600, 'y'],
  [24 * 3600, 'd'],
  [3600, 'h'],
  [60, 'm'],
  [1, 's'],
]

/** `3d`, `5m`, `12s`: the larger unit only, as kubectl writes ages. */
export function span(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds))
  for (const [size, unit] of UNITS) {
    if (s >= size) return `${Math.floor(s / size)}${unit}`
  }
  return '0s'
}

/** `5m ago`, or `never`. */
export function ago(time: string | undefined, now: Date): string {
  if (!time) return 'never'
  return `${span((now.getTime() - Date.parse(time)) / 1000)} ago`
}

/** `in 9y`, or `expired 2d ago`. */
export function until(time: string, now: Date): string {
  const seconds = (Date.parse(time) - now.getTime()) / 1000
  return seconds >= 0 ? `in ${span(seconds)}` : `expired ${span(-seconds)} ago`
}
