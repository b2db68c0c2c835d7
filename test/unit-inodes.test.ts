import t from 'tap'
import { InodeNumbers } from '../src/fuse/inodeNumbers'

t.test('inode numbers follow renames made through the mount, and freed names get new numbers', async (t) => {
  const inodes = new InodeNumbers()
  const other = new InodeNumbers()
  t.equal(inodes.of('/'), 1, 'the root is 1')
  t.equal(inodes.of('/d/a.txt'), other.of('/d/a.txt'), 'a path has the same number on every mount')
  t.not(inodes.of('/d/a.txt'), inodes.of('/d/b.txt'), 'two paths, two numbers')

  const a = inodes.of('/d/a.txt')
  inodes.renamed('/d/a.txt', '/d/b.txt')
  t.equal(inodes.of('/d/b.txt'), a, 'a renamed file keeps its number')
  t.not(inodes.of('/d/a.txt'), a, 'a new file at the old name gets another')

  const x = inodes.of('/d/sub/x')
  const deep = inodes.of('/d/sub/deeper/y')
  inodes.renamed('/d/sub/x', '/d/sub/x2')
  inodes.renamed('/d/sub', '/e')
  t.equal(inodes.of('/e/x2'), x, 'a file renamed, then its folder: the number stays')
  t.equal(inodes.of('/e/deeper/y'), deep, 'everything below a renamed folder keeps its number')
  t.equal(inodes.of('/d/b.txt'), a, 'records outside the folder stay')
  inodes.renamed('/e', '/d/sub')
  t.equal(inodes.of('/d/sub/x2'), x, 'and back again')

  const replaced = inodes.of('/d/c.txt')
  inodes.renamed('/d/b.txt', '/d/c.txt')
  t.equal(inodes.of('/d/c.txt'), a, 'a rename over a file gives the target the source\'s number')
  t.not(inodes.of('/d/c.txt'), replaced, 'not the replaced file\'s')
})

t.test('the records start afresh past their limit', async (t) => {
  const inodes = new InodeNumbers(4)
  const plain = new InodeNumbers()
  inodes.renamed('/a', '/b')
  inodes.renamed('/c', '/d')
  t.not(inodes.of('/b'), plain.of('/b'), 'within the limit: /b has /a\'s number')
  inodes.renamed('/e', '/f')
  t.equal(inodes.of('/b'), plain.of('/b'), 'past it: /b has its own path\'s number again')
  t.equal(inodes.of('/f'), plain.of('/e'), 'the latest rename is kept')
})
