import t from 'tap'
import { mountDeviceOf } from '../src/fuse/mount'

/* Which device a mount point has, from /proc/self/mountinfo (widenReadAhead): paths come escaped, and the last mount there counts. */

const MOUNTINFO = [
  '22 1 259:1 / / rw,relatime shared:1 - ext4 /dev/root rw',
  '41 22 0:40 / /tmp/my\\040mount rw,nosuid,nodev,relatime shared:30 - fuse.dfs dfs rw,user_id=0,group_id=0',
  '42 22 0:41 / /tmp/other rw,nosuid,nodev,relatime shared:31 - fuse.dfs dfs rw,user_id=0,group_id=0',
  '43 22 0:44 / /tmp/other rw,nosuid,nodev,relatime shared:32 - fuse.dfs dfs rw,user_id=0,group_id=0',
  ''
].join('\n')

t.test('a mount point with a space is found by its real name', async (t) => {
  t.equal(mountDeviceOf(MOUNTINFO, '/tmp/my mount'), '0:40')
  t.equal(mountDeviceOf(MOUNTINFO, '/tmp/my\\040mount'), undefined, 'not by its escaped one')
})

t.test('of two mounts on one path, the last (the one on top) counts; none: undefined', async (t) => {
  t.equal(mountDeviceOf(MOUNTINFO, '/tmp/other'), '0:44')
  t.equal(mountDeviceOf(MOUNTINFO, '/tmp/nothing'), undefined)
})
