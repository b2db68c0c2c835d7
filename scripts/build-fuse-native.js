#!/usr/bin/env node
'use strict'
/*
 * Builds fuse-native from its (patched, see patches/) source at install; run by the
 * postinstall script after patch-package. fuse-native ships a prebuilt binary in prebuilds/,
 * made from the unpatched source, and its own install script only builds when no prebuilt
 * binary fits, so without this the patch would reach index.js and never the binding.
 * node-gyp-build prefers build/Release over prebuilds/, so the build made here is the one
 * loaded; the check at the end and loadFuse's patch-level check make sure of it.
 *
 * Plain JavaScript, not TypeScript: postinstall runs before `prepare` compiles dist/.
 */
const { spawnSync } = require('node:child_process')
const path = require('node:path')

const fuseNativeDir = path.dirname(require.resolve('fuse-native/package.json'))

// npm tells its scripts where its own node-gyp is; run by hand, use the one on PATH.
const nodeGyp = process.env.npm_config_node_gyp
const [command, args] = nodeGyp ? [process.execPath, [nodeGyp, 'rebuild']] : ['node-gyp', ['rebuild']]

const built = spawnSync(command, args, { cwd: fuseNativeDir, stdio: 'inherit' })
if (built.error || built.status !== 0) {
  const why = built.error ? built.error.message : `node-gyp exited with ${built.status ?? built.signal}`
  console.error(`dfs: building the patched fuse-native failed (${why}); it needs g++, make and python3 (apt-get install g++ make python3)`)
  process.exit(1)
}

// Resolving (not loading: that needs libfuse, which servers-only machines may lack) tells
// which binary a require('fuse-native') would load.
const loaded = require(require.resolve('node-gyp-build', { paths: [fuseNativeDir] })).resolve(fuseNativeDir)
if (!loaded.startsWith(path.join(fuseNativeDir, 'build', 'Release') + path.sep)) {
  console.error(`dfs: fuse-native would load ${loaded}, not the patched build in build/Release (is PREBUILDS_ONLY or FUSE_NATIVE_PREBUILD set?)`)
  process.exit(1)
}
console.log(`dfs: built the patched fuse-native: ${path.relative(process.cwd(), loaded)}`)
