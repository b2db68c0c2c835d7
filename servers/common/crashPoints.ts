/**
 * Crash points for the fault tests: a server started with DFS_CRASH_AT=NAME kills itself
 * (SIGKILL: no cleanup, no flush, as a power cut or kill -9 would) when it reaches the
 * point NAME, so a test can crash it between two exact steps of a change. Unset, a point
 * costs one comparison.
 */
export function crashPoint (name: string): void {
  if (process.env.DFS_CRASH_AT === name) process.kill(process.pid, 'SIGKILL')
}
