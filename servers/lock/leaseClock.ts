import type { HeldLock } from '../../src/shared/clusterStatus'
import { leasesHeldGauge, lockHoldSeconds } from '../common/metrics'
import type { LockTable } from './lockTable'

/**
 * When each live lease was granted, by token, for operators: how long locks are held
 * (dfs_lock_hold_seconds) and what GET /locks/held shows. Kept in memory only; a lease
 * granted before a restart shows no age. A lease that lapsed unreleased is counted as
 * expired the next time the clock looks.
 */
export class LeaseClock {
  private readonly granted = new Map<number, { at: number, expiresAt: number }>()
  private readonly removeGauge: () => void

  constructor (private readonly table: LockTable, private readonly now: () => number = Date.now) {
    this.removeGauge = leasesHeldGauge.add(async () => [{ labels: {}, value: (await this.table.held()).length }])
  }

  grantedNow (token: number, expiresAt: number): void {
    this.sweep()
    this.granted.set(token, { at: this.now(), expiresAt })
  }

  renewed (token: number, expiresAt: number): void {
    const lease = this.granted.get(token)
    if (lease) lease.expiresAt = expiresAt
  }

  /** `outcome` abandoned: the server ended it, its holder being gone (delegatedLeases.ts). */
  released (token: number, outcome: 'released' | 'abandoned' = 'released'): void {
    const lease = this.granted.get(token)
    if (!lease) return
    this.granted.delete(token)
    lockHoldSeconds.observe({ outcome }, (this.now() - lease.at) / 1000)
  }

  /** The live leases, with their age where it is known. */
  async held (): Promise<HeldLock[]> {
    this.sweep()
    const now = this.now()
    return (await this.table.held()).map(({ path, lease }) => {
      const known = this.granted.get(lease.token)
      return { path, holder: lease.holder === undefined ? lease.owner : `${lease.holder} (${lease.owner})`, heldForMs: known === undefined ? null : now - known.at, expiresInMs: lease.expiresAt - now }
    }).sort((a, b) => a.path.localeCompare(b.path))
  }

  close (): void {
    this.removeGauge()
  }

  private sweep (): void {
    const now = this.now()
    for (const [token, lease] of this.granted) {
      if (lease.expiresAt > now) continue
      this.granted.delete(token)
      lockHoldSeconds.observe({ outcome: 'expired' }, (lease.expiresAt - lease.at) / 1000)
    }
  }
}
