import { CliError } from './common'

/*
 * dfs-mount as mount(8) runs it. An fstab line of type fuse.dfs-mount (or `mount -t
 * fuse.dfs-mount URL DIR -o ...`) makes mount.fuse3 run `dfs-mount URL DIR -o LIST`: the
 * directory server's URL as the source, and every setting in the one -o list, since an
 * fstab line has no other place for them. So the items of -o that name one of dfs-mount's
 * own options (lock=URL, token_file=FILE, cache_dir=DIR, soft, ...) are taken as that
 * option, and the rest stay mount options (mountFlags.ts).
 */

/** dfs-mount's options that an -o item may not set: they say how to run this command, not what the mount is. */
const NOT_FROM_MOUNT_OPTIONS = new Set(['o', 'foreground', 'help', 'version'])

/**
 * `argv` with every -o item that names one of `ownOptions` (dashes or underscores:
 * token_file is --token-file) moved out of its list to `--name value` (`--name` for a
 * switch: `soft`). `-oLIST` is read as `-o LIST`.
 */
export function liftOwnOptions (argv: readonly string[], ownOptions: ReadonlySet<string>, switches: ReadonlySet<string>): string[] {
  const kept: string[] = []
  const lifted: string[] = []
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]
    const list = arg === '-o' ? argv[++i] : arg.startsWith('-o') && !arg.startsWith('-o=') ? arg.slice(2) : undefined
    if (list === undefined) {
      kept.push(arg)
      continue
    }
    const rest: string[] = []
    for (const item of list.split(',')) {
      const at = item.indexOf('=')
      const name = (at < 0 ? item : item.slice(0, at)).trim().replace(/_/g, '-')
      if (!ownOptions.has(name) || NOT_FROM_MOUNT_OPTIONS.has(name)) {
        rest.push(item)
        continue
      }
      if (switches.has(name)) {
        if (at >= 0) throw new CliError(`-o ${name} takes no value`)
        lifted.push(`--${name}`)
      } else {
        if (at < 0 || item.slice(at + 1) === '') throw new CliError(`-o ${name} needs a value: ${name.replace(/-/g, '_')}=...`)
        lifted.push(`--${name}`, item.slice(at + 1))
      }
    }
    if (rest.length > 0) kept.push('-o', rest.join(','))
  }
  return [...kept, ...lifted]
}

/**
 * The directory URL and the mount point from dfs-mount's words: `MOUNTPOINT`, or
 * `URL MOUNTPOINT` as mount(8) gives them (the URL then is the directory server's, and
 * --directory may not say otherwise).
 */
export function mountTarget (words: readonly string[], directoryOption: string, directoryGiven: boolean): { directoryUrl: string, mountpoint: string } {
  if (words.length === 1) return { directoryUrl: directoryOption, mountpoint: words[0] }
  if (words.length !== 2) throw new CliError('name one mount point (or the directory server\'s URL and a mount point, as mount(8) gives them)')
  const [source, mountpoint] = words
  if (!/^https?:\/\/[^/]/.test(source)) throw new CliError(`${source} is not a directory server URL (http://HOST:PORT or https://HOST:PORT); name one mount point, or a URL and a mount point`)
  if (directoryGiven && directoryOption !== source) throw new CliError(`the directory server is given twice (${source} and --directory ${directoryOption}): give it once`)
  return { directoryUrl: source, mountpoint }
}
