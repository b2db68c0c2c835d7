/**
 * The latest problems of this process (errors answered with a 5xx, file servers that went
 * down), newest last, for the status page: what an operator wants to see first when
 * something is wrong, without reading the logs. Bounded; kept in memory only.
 */
export interface Problem {
  /** ms since the epoch */
  atMs: number
  message: string
}

const KEPT = 50
const problems: Problem[] = []

export function noteProblem (message: string): void {
  problems.push({ atMs: Date.now(), message })
  if (problems.length > KEPT) problems.splice(0, problems.length - KEPT)
}

/** The latest `count` problems, newest first. */
export function recentProblems (count = 20): Problem[] {
  return problems.slice(-count).reverse()
}
