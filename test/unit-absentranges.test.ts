import t from 'tap'
import { AbsentRanges } from '../src/client/absentRanges'

t.test('absent ranges: all of the version at first, less what arrives; a cut ends them at the new size', async (t) => {
  const absent = new AbsentRanges(100)
  t.same(absent.within(10, 20), [[10, 20]], 'all absent at first')
  absent.arrived(10, 20)
  absent.arrived(50, 60)
  t.same(absent.within(0, 100), [[0, 10], [20, 50], [60, 100]], 'arrived ranges cut holes')
  t.same(absent.within(15, 55), [[20, 50]], 'within clips to the asked range')
  absent.arrived(0, 30)
  t.same(absent.within(0, 100), [[30, 50], [60, 100]], 'an arrival over a hole\'s edge')
  absent.truncated(70)
  t.same(absent.within(0, 1000), [[30, 50], [60, 70]], 'nothing past a cut is absent')
  absent.arrived(30, 70)
  t.ok(absent.none, 'all here')
  t.ok(new AbsentRanges(0).none, 'an empty version has nothing absent')
})
