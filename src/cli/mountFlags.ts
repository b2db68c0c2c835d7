import { CliError } from './common'

/**
 * What `dfs-mount -o a,b,c=d` asks for, as the mount takes it: options for the kernel and
 * libfuse, and the owner the mount shows its files with.
 */
export interface MountFlags {
  /** Passed to libfuse as they are (allow_other, default_permissions, ro, umask=...). */
  kernel: string[]
  /** Who owns every file as the mount shows it; absent: the user who mounted. */
  uid?: number
  gid?: number
  /** Other local users may use the mount (needs user_allow_other in /etc/fuse.conf for a non-root user). */
  allowOther: boolean
}

/** Passed through unchanged: each means to dfs what it means to any FUSE mount. */
const PASSED = new Set([
  'ro', 'rw', 'default_permissions', 'allow_root', 'auto_unmount',
  'nodev', 'dev', 'nosuid', 'suid', 'noexec', 'exec', 'noatime', 'atime', 'relatime', 'nodiratime', 'sync', 'async'
])

/** What fstab's and mount(8)'s own options say is for them, not for the file system: accepted and left out. */
const MOUNT_ONLY = new Set(['_netdev', 'noauto', 'auto', 'nofail', 'user', 'users', 'nouser', 'defaults'])

/**
 * Refused, with why: each would break something dfs promises (sshfs and rclone users may
 * type them out of habit).
 */
const REFUSED: Record<string, string> = {
  kernel_cache: 'dfs needs auto_cache (pages of a file another client changed are dropped at open)',
  direct_io: 'dfs chooses per handle which handles bypass the page cache',
  hard_remove: 'dfs keeps files unlinked while open readable itself (libfuse 2 with hard_remove answers ENOENT on their descriptors)',
  use_ino: 'dfs always shows its own inode numbers',
  nonempty: 'dfs always mounts over a non-empty folder',
  big_writes: 'dfs always asks for big writes',
  reconnect: 'dfs reconnects by itself (a hard mount retries until its servers answer; see --soft)',
  follow_symlinks: 'dfs shows symbolic links as links, never what they point to',
  idmap: 'dfs has no user map: use uid= and gid= to choose who owns the files shown',
  transform_symlinks: 'dfs stores link targets as given'
}

const NUMERIC: Record<string, { max: number, radix: number }> = {
  uid: { max: 0xfffffffe, radix: 10 },
  gid: { max: 0xfffffffe, radix: 10 },
  umask: { max: 0o777, radix: 8 }
}

/** Parses every `-o` given (each a comma-separated list) into what the mount does with them. */
export function parseMountFlags (lists: readonly string[]): MountFlags {
  const flags: MountFlags = { kernel: [], allowOther: false }
  const kernel = new Set<string>()
  for (const item of lists.flatMap((list) => list.split(',')).map((option) => option.trim()).filter((option) => option !== '')) {
    const [name, value] = splitOption(item)
    if (name in REFUSED) throw new CliError(`-o ${name} is not supported: ${REFUSED[name]}`)
    if (MOUNT_ONLY.has(name) && value === undefined) continue
    // libmount's userspace options (x-systemd.mount-timeout=30s, comment=...): for mount(8) and systemd, never the file system.
    if (name.startsWith('x-') || name === 'comment') continue
    if (name === 'allow_other' && value === undefined) {
      flags.allowOther = true
      // Without it every local user would act with the mounting user's rights (libfuse checks
      // nothing by itself): the kernel checks the mode bits each file shows against the caller.
      kernel.add('allow_other').add('default_permissions')
      continue
    }
    if (PASSED.has(name)) {
      if (value !== undefined) throw new CliError(`-o ${name} takes no value`)
      kernel.add(name)
      continue
    }
    const numeric = NUMERIC[name]
    if (numeric === undefined) throw new CliError(`-o ${name}: unknown mount option (dfs-mount --help lists the ones it takes)`)
    if (value === undefined) throw new CliError(`-o ${name} needs a value: ${name}=N`)
    const number = parseNumber(value, numeric.radix)
    if (number === null || number > numeric.max) throw new CliError(`-o ${name}=${value}: not a valid ${name}`)
    if (name === 'umask') kernel.add(`umask=${value}`)
    else if (name === 'uid') flags.uid = number
    else flags.gid = number
  }
  if (kernel.has('ro') && kernel.has('rw')) throw new CliError('-o ro and rw contradict each other: give one')
  if (kernel.has('allow_root') && flags.allowOther) throw new CliError('-o allow_root and allow_other contradict each other: give one')
  flags.kernel = [...kernel].filter((option) => option !== 'rw')
  return flags
}

function splitOption (item: string): [string, string | undefined] {
  const at = item.indexOf('=')
  return at < 0 ? [item, undefined] : [item.slice(0, at), item.slice(at + 1)]
}

function parseNumber (text: string, radix: number): number | null {
  const pattern = radix === 8 ? /^[0-7]{1,4}$/ : /^[0-9]{1,10}$/
  return pattern.test(text) ? parseInt(text, radix) : null
}

/**
 * Whether /etc/fuse.conf (the text given) lets users other than root mount with
 * allow_other: a line `user_allow_other` on its own (fusermount's rule).
 */
export function fuseConfAllowsOther (text: string | null): boolean {
  if (text === null) return false
  return text.split('\n').some((line) => line.replace(/#.*/, '').trim() === 'user_allow_other')
}

/** The option list's own help text, for dfs-mount --help. */
export const MOUNT_FLAGS_HELP = 'mount options, comma-separated, as for sshfs or rclone: ro, allow_other (implies default_permissions), allow_root, ' +
  'default_permissions, uid=N and gid=N (owner shown for every file), umask=OOO (shown mode bits), nodev, nosuid, noexec, noatime, ' +
  'auto_unmount; fstab\'s _netdev, noauto, nofail, user are accepted and ignored; any option below by its name (lock=URL,token_file=FILE,soft)'
