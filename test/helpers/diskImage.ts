import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'

/**
 * Every file and folder under a folder, with its mode and a file's bytes (as a hash): what
 * "no byte on disk changed" is checked against.
 */
export function diskImage (root: string): Record<string, string> {
  const image: Record<string, string> = {}
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name)
      const mode = (fs.lstatSync(full).mode & 0o7777).toString(8)
      if (entry.isDirectory()) {
        image[path.relative(root, full) + '/'] = mode
        walk(full)
      } else {
        image[path.relative(root, full)] = `${mode} ${crypto.createHash('sha256').update(fs.readFileSync(full)).digest('hex')}`
      }
    }
  }
  walk(root)
  return image
}
