/**
 * A log line with its control characters escaped (a newline as \\n): a file name with a
 * newline in it cannot forge a line of its own in a server's or mount's log.
 */
export function logLine (line: string): string {
  // eslint-disable-next-line no-control-regex
  return line.replace(/[\u0000-\u001f\u007f]/g, (c) => c === '\n' ? '\\n' : `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`)
}
