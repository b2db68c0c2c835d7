import t from 'tap'
import { FreeSpace } from '../servers/file/uploadLimits'

t.test('an upload is let through unasked only while a fresh measure leaves room for it and everything since', async (t) => {
  let now = 1_000_000
  let free = 1000
  let measures = 0
  const space = new FreeSpace(async () => {
    measures++
    return free
  }, () => now)
  t.notOk(space.surelyFits(10), 'nothing measured yet: ask')
  t.equal(await space.measure(), 1000)
  t.ok(space.surelyFits(300), 'under half of what was free')
  t.ok(space.surelyFits(200), 'together still at half')
  t.notOk(space.surelyFits(1), 'past half: ask again')
  free = 100
  t.equal(await space.measure(), 100, 'a new measure starts the count again')
  t.notOk(space.surelyFits(60), 'over half of the new figure')
  t.ok(space.surelyFits(50))
  now += 1001
  t.notOk(space.surelyFits(1), 'a measure over a second old is not trusted')
  t.equal(measures, 2)
})
