'use strict'
// The commands are TypeScript compiled to dist/; these launchers find the build and say
// what to do when there is none yet, instead of a module-not-found trace.
const fs = require('fs')
const path = require('path')

module.exports = function launch (command, module) {
  const target = path.join(__dirname, '..', 'dist', 'src', 'cli', module + '.js')
  if (!fs.existsSync(target)) {
    process.stderr.write(`${command}: dfs is not built yet: run "npm install" (or "npm run build") in ${path.dirname(__dirname)}\n`)
    process.exit(1)
  }
  require(target)
}
