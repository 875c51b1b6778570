import { describe, expect, it } from 'vitest'
import { ago, isOnline, lastNack, perType, rejected, span, until } from '../src/status'
import { overview } from './fixtures'

describe('a dataplane insight', () => {
  it('is online while a stream is open and offline once every stream closed', () => {
    expect(isOnline(overview('a', 'web', true).dataplaneInsight)).toBe(true)
    expect(isOnline(overview('a', 'web', false).dataplaneInsight)).toBe(false)
    expect(isOnline({})).toBe(false)
  })

  it('counts NACKs and keeps the last message', () => {
    const insight = overview('a', 'web', true).dataplaneInsight
    expect(rejected(insight)).toBe(1)
    expect(lastNack(insight)).toContain('connect_timeout')
    const cds = perType(insight.subscriptions![0]).find((t) => t.type === 'CDS')
    expect(cds).toEqual({ type: 'CDS', sent: 2, acknowledged: 1, rejected: 1 })
  })
})

describe('times', () => {
  const now = new Date('2026-12-01T12:00:00Z')
  it('are written in their largest unit', () => {
    expect(span(59)).toBe('59s')
    expect(span(3600 * 5 + 59)).toBe('5h')
    expect(span(3650 * 24 * 3600)).toBe('10y')
    expect(ago('2026-12-01T11:58:00Z', now)).toBe('2m ago')
    expect(ago(undefined, now)).toBe('never')
  })

  it('say when something expired', () => {
    expect(until('2026-12-03T12:00:00Z', now)).toBe('in 2d')
    expect(until('2026-11-30T12:00:00Z', now)).toBe('expired 1d ago')
  })
})
