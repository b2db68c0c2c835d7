/** Defaults shared by servers, client and CLIs: one place to read and change them. */

/** Per request: a server silent for this long is reported as not answering. */
export const DEFAULT_TIMEOUT_MS = 5_000
