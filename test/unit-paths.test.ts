import fc from 'fast-check'
import t from 'tap'
import { MAX_NAME_BYTES, normalizeFully, normalizePath } from '../src/shared/paths'

/** The answer of a normalization: the path, or the error's class and message. */
function outcome (normalize: (input: unknown) => string, input: unknown): string {
  try {
    return `ok ${normalize(input)}`
  } catch (err) {
    return `${(err as Error).name}: ${(err as Error).message}`
  }
}

// Paths built from pieces that make every kind of case likely: empty names, '.', '..', NUL,
// multi-byte characters and names just under and over the byte limits.
const piece = fc.oneof(
  fc.constantFrom('', '.', '..', '...', '.a', 'a.', 'x', 'journal', '\u0000', 'é', '日本', '\u{1F600}', '\uD800'),
  fc.string({ maxLength: 12 }),
  fc.integer({ min: 80, max: 260 }).map((n) => 'n'.repeat(n)),
  fc.integer({ min: 80, max: 90 }).map((n) => '日'.repeat(n))
)
const anyPath = fc.tuple(fc.boolean(), fc.array(piece, { maxLength: 8 }), fc.boolean())
  .map(([absolute, names, trailing]) => (absolute ? '/' : '') + names.join('/') + (trailing ? '/' : ''))

t.test('normalizePath answers every path as the full check does, its shortcut for canonical paths included', async (t) => {
  fc.assert(fc.property(anyPath, (input) => outcome(normalizePath, input) === outcome(normalizeFully, input)), { numRuns: 20_000 })
  // Canonical paths (the shortcut's case) in particular: each answer is the input itself.
  fc.assert(fc.property(anyPath, (input) => {
    const canonical = outcome(normalizeFully, input)
    if (!canonical.startsWith('ok ')) return true
    const path = canonical.slice(3)
    return normalizePath(path) === path
  }), { numRuns: 20_000 })
  t.equal(normalizePath('/'), '/')
  t.equal(normalizePath('/a/./b//c/'), '/a/b/c')
  t.throws(() => normalizePath('/a/../b'), { name: 'BadPathError' })
  t.throws(() => normalizePath('/a\u0000b'), { name: 'BadPathError' })
  t.throws(() => normalizePath('/' + 'é'.repeat(MAX_NAME_BYTES)), { name: 'NameTooLongError' })
  t.throws(() => normalizePath(''), { name: 'BadPathError' })
  t.throws(() => normalizePath(42), { name: 'BadPathError' })
})
