import fs from 'node:fs'
import path from 'node:path'
import t from 'tap'
import { repoRoot } from './helpers/processes'

/**
 * The layers as the tree shows them: src/shared imports nothing above it; the servers and
 * the client core build on shared only; the FUSE adapter on the client; the CLIs on
 * everything; the bench on no test code. And no module imports itself through a cycle.
 */
const layers: Array<{ dir: string, mayImport: string[] }> = [
  { dir: 'src/shared/', mayImport: ['src/shared/'] },
  { dir: 'servers/', mayImport: ['src/shared/', 'servers/'] },
  { dir: 'src/client/', mayImport: ['src/shared/', 'src/client/'] },
  { dir: 'src/fuse/', mayImport: ['src/shared/', 'src/client/', 'src/fuse/'] },
  { dir: 'bench/', mayImport: ['src/', 'servers/', 'bench/'] }
]

function sourceFiles (dir: string): string[] {
  const found: string[] = []
  for (const entry of fs.readdirSync(path.join(repoRoot, dir), { withFileTypes: true })) {
    const relative = path.posix.join(dir, entry.name)
    if (entry.isDirectory()) found.push(...sourceFiles(relative))
    else if (entry.name.endsWith('.ts')) found.push(relative)
  }
  return found
}

/** The project files a module imports (relative imports only, resolved to .ts files). */
function importsOf (file: string): string[] {
  const text = fs.readFileSync(path.join(repoRoot, file), 'utf8')
  const targets: string[] = []
  for (const match of text.matchAll(/(?:from|import\()\s*'(\.[^']+)'/g)) {
    const base = path.posix.normalize(path.posix.join(path.posix.dirname(file), match[1]))
    const resolved = [`${base}.ts`, `${base}/index.ts`].find((candidate) => fs.existsSync(path.join(repoRoot, candidate)))
    if (resolved) targets.push(resolved)
  }
  return targets
}

const files = ['src', 'servers', 'bench', 'test'].flatMap(sourceFiles)
const graph = new Map(files.map((file) => [file, importsOf(file)]))

t.test('each layer imports only from the layers beneath it', async (t) => {
  t.ok(graph.size > 40, `read the imports of ${graph.size} modules`)
  const breaches: string[] = []
  for (const [file, targets] of graph) {
    const layer = layers.find((l) => file.startsWith(l.dir))
    if (!layer) continue
    for (const target of targets) {
      if (!layer.mayImport.some((allowed) => target.startsWith(allowed))) breaches.push(`${file} imports ${target}`)
    }
  }
  t.same(breaches, [], 'no module reaches above its layer')
})

t.test('no import cycles', async (t) => {
  const cycles: string[] = []
  const state = new Map<string, 'visiting' | 'done'>()
  const visit = (file: string, trail: string[]): void => {
    state.set(file, 'visiting')
    for (const target of graph.get(file) ?? []) {
      if (state.get(target) === 'visiting') cycles.push([...trail.slice(trail.indexOf(target)), target].join(' -> '))
      else if (!state.has(target)) visit(target, [...trail, target])
    }
    state.set(file, 'done')
  }
  for (const file of graph.keys()) if (!state.has(file)) visit(file, [file])
  t.same(cycles, [], 'every import chain ends')
})
