import crypto from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { STATE_DIR_NAME, UPLOAD_DIR_NAME } from '../../servers/file/fileStore'

const UPLOAD_FOLDER = path.join(STATE_DIR_NAME, UPLOAD_DIR_NAME)

/**
 * Every file and folder under a folder, with its mode and a file's bytes (as a hash): what
 * "no byte on disk changed" is checked against. A file server's upload folder is left out:
 * it holds scratch files (the next upload's, made ahead; removed files on their way out)
 * under random names, and is emptied at every start.
 */
export function diskImage (root: string): Record<string, string> {
  const image: Record<string, string> = {}
  const walk = (dir: string): void => {
    for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name)
      if (path.relative(root, full) === UPLOAD_FOLDER) continue
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

/**
 * Files a file server's upload folder holds bytes in: an upload left behind. The file made
 * ahead for the next upload is empty, and is not one.
 */
export function uploadsLeft (root: string): string[] {
  const uploads = path.join(root, UPLOAD_FOLDER)
  return fs.readdirSync(uploads).filter((name) => (fs.statSync(path.join(uploads, name), { throwIfNoEntry: false })?.size ?? 0) > 0)
}
