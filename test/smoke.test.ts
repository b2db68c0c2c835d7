import t from 'tap'
import { startTestCluster } from './helpers/cluster'

t.test('a client reads a sample file', async (t) => {
  const cluster = await startTestCluster(t, [{ 'notes/a.txt': 'hello\n' }])
  const client = cluster.client()
  t.equal((await client.readFile('/notes/a.txt')).toString(), 'hello\n')
})
