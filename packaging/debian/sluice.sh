#!/bin/sh
# sluice, with the Node.js runtime the package bundles.
exec /usr/lib/sluice/bin/node /usr/lib/sluice/app/dist/cli.js "$@"
