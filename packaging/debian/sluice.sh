#!/bin/sh
# sluice, with the Node.js runtime the package bundles, and sluice's OpenSSL settings (TLS 1.3
# session tickets off: see /usr/lib/sluice/app/bin/openssl.cnf).
exec /usr/lib/sluice/bin/node --openssl-config=/usr/lib/sluice/app/bin/openssl.cnf --max-semi-space-size=8 /usr/lib/sluice/app/dist/cli.js "$@"
