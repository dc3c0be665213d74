#!/usr/bin/env bash
# Unpacks the real peers the tests use from Debian's packages, without installing them
# (rsyslog and syslog-ng conflict as packages). Idempotent: does nothing when they are there.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
peers=${SLUICE_PEERS_DIR:-$here/.peers}
mkdir -p "$peers"

need_update=1
apt_update() {
  if [ $need_update = 1 ]; then
    apt-get update -qq >/dev/null
    need_update=0
  fi
}

unpack() { # unpack PACKAGE DIR
  local pkg=$1 dir=$2 tmp
  tmp=$(mktemp -d)
  apt_update
  (cd "$tmp" && apt-get download -qq "$pkg" >/dev/null 2>&1)
  mkdir -p "$dir"
  dpkg -x "$tmp"/"$pkg"_*.deb "$dir"
  rm -rf "$tmp"
}

# syslog-ng-core ships loggen and syslog-ng itself; the libraries it needs beyond a minimal
# Debian go beside it (LD_LIBRARY_PATH), so nothing is installed system-wide.
if [ ! -f "$peers/syslog-ng/.complete" ]; then
  echo "install-peers: unpacking syslog-ng-core and its libraries into $peers/syslog-ng"
  for pkg in syslog-ng-core libivykis0 libpcre3 libnet1 libjson-c5 libwrap0; do
    unpack "$pkg" "$peers/syslog-ng"
  done
  touch "$peers/syslog-ng/.complete"
fi

# rsyslog with RELP (omrelp, imrelp) for the RELP interop tests, beside syslog-ng: they conflict as
# packages, so both are unpacked, not installed.
if [ ! -f "$peers/rsyslog/.complete" ]; then
  echo "install-peers: unpacking rsyslog, rsyslog-relp and their libraries into $peers/rsyslog"
  for pkg in rsyslog rsyslog-relp librelp0 libestr0 libfastjson4 liblognorm5; do
    unpack "$pkg" "$peers/rsyslog"
  done
  touch "$peers/rsyslog/.complete"
fi

# nats-server 2.9.10 (JetStream) for the nats source and destination tests and bench:nats: a static
# Go binary, unpacked like the others.
if [ ! -x "$peers/nats/usr/sbin/nats-server" ]; then
  echo "install-peers: unpacking nats-server into $peers/nats"
  unpack nats-server "$peers/nats"
fi

# librelp's client and server as test tools: relp-send and relp-receive (scripts/relp-tools), built
# with gcc against Debian's librelp-dev headers and the librelp0 unpacked for rsyslog above.
tools_src="$here/scripts/relp-tools"
if [ ! -x "$peers/relp-tools/relp-send" ] || [ "$tools_src/relp-send.c" -nt "$peers/relp-tools/relp-send" ] || [ "$tools_src/relp-receive.c" -nt "$peers/relp-tools/relp-receive" ]; then
  echo "install-peers: building relp-send and relp-receive against librelp-dev into $peers/relp-tools"
  command -v gcc >/dev/null 2>&1 || { apt_update; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gcc libc6-dev >/dev/null; }
  [ -f "$peers/librelp-dev/usr/include/librelp.h" ] || unpack librelp-dev "$peers/librelp-dev"
  mkdir -p "$peers/relp-tools"
  lib="$peers/rsyslog/usr/lib/x86_64-linux-gnu"
  for tool in relp-send relp-receive; do
    gcc -O2 -Wall -Werror -o "$peers/relp-tools/$tool" "$tools_src/$tool.c" -I"$peers/librelp-dev/usr/include" -L"$lib" -l:librelp.so.0 -Wl,-rpath,"$lib"
  done
fi

# util-linux logger and openssl (for TLS test certificates) are ordinary packages; so are the
# tools of the package tests: debootstrap, and systemd for systemd-analyze.
missing=()
command -v logger >/dev/null 2>&1 || missing+=(bsdutils)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v debootstrap >/dev/null 2>&1 || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
# The journald source's tests run a real systemd-journald (package systemd) and read it with journalctl;
# glibc's syslog(3) is driven from python3; unshare and setpriv come with util-linux.
[ -x /lib/systemd/systemd-journald ] || [ -x /usr/lib/systemd/systemd-journald ] || missing+=(systemd)
command -v journalctl >/dev/null 2>&1 || missing+=(systemd)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
command -v unshare >/dev/null 2>&1 || missing+=(util-linux)
command -v setpriv >/dev/null 2>&1 || missing+=(util-linux)
command -v dpkg-deb >/dev/null 2>&1 || missing+=(dpkg)
# The load-shedding tests make an ext4 filesystem on a loop device.
[ -x /sbin/mkfs.ext4 ] || [ -x /usr/sbin/mkfs.ext4 ] || missing+=(e2fsprogs)
[ -x /sbin/losetup ] || [ -x /usr/sbin/losetup ] || missing+=(mount)
# The status page test drives Debian's Chromium with playwright-core.
[ -x /usr/bin/chromium ] || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-peers: installing ${missing[*]}"
  apt_update
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
# A clean Debian bookworm root for the package install test (minbase plus systemd, whose units
# systemd-analyze verify needs), from the mirror in this machine's apt sources.
if [ ! -f "$peers/bookworm.complete" ]; then
  mirror=$(grep -h -m1 -E '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null | grep -o 'https\?://[^ ]*debian/\?' | head -1 || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  echo "install-peers: debootstrap bookworm into $peers/bookworm from $mirror"
  rm -rf "$peers/bookworm"
  PATH="$PATH:/usr/sbin:/sbin" debootstrap --variant=minbase --include=systemd bookworm "$peers/bookworm" "$mirror" >"$peers/debootstrap.log" 2>&1 || {
    tail -20 "$peers/debootstrap.log" >&2
    echo "install-peers: debootstrap failed (see $peers/debootstrap.log)" >&2
    exit 1
  }
  touch "$peers/bookworm.complete"
fi
echo "install-peers: ready ($peers)"
