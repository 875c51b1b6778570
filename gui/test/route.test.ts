import { describe, expect, it } from 'vitest'
import { href, parse } from '../src/route'
import { parseTags } from '../src/pages/Dataplanes'
import { dataplanesPath } from '../src/api'

describe('routes', () => {
  it('round-trip through the hash, names with odd characters included', () => {
    expect(parse(href.overview())).toEqual({ page: 'overview' })
    expect(parse(href.dataplane('my mesh', 'web/1'))).toEqual({ page: 'dataplane', mesh: 'my mesh', name: 'web/1' })
    expect(parse(href.map('m'))).toEqual({ page: 'map', mesh: 'm' })
    const route = parse(href.dataplanes('m', new URLSearchParams({ status: 'offline' })))
    expect(route.page).toBe('dataplanes')
    expect(route.page === 'dataplanes' && route.query.get('status')).toBe('offline')
    expect(parse('#/nowhere').page).toBe('missing')
  })
})

describe('the dataplane filter', () => {
  it('reads key:value tags and says what is wrong with others', () => {
    expect(parseTags('service:web, version:2')).toEqual({ service: 'web', version: '2' })
    expect(parseTags('')).toEqual({})
    expect(parseTags('service')).toContain('"service" is not key:value')
  })

  it('asks the API for one page of the filtered list', () => {
    expect(dataplanesPath('default', { offset: 100, size: 100, tags: { service: 'web' }, status: 'online' })).toBe(
      '/meshes/default/dataplanes+insights?tag=service%3Aweb&status=online&offset=100&size=100',
    )
  })
})
