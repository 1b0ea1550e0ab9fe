#!/usr/bin/env bash
# Fetches a newer <linux/kvm.h> than Debian 12's (6.1) to prove the interop names that only newer
# kernels define (KVM_SET_USER_MEMORY_REGION2, KVM_CAP_USER_MEMORY2, ...): linux-libc-dev from
# bookworm-backports, downloaded with `apt-get download` through a private apt configuration (the
# system's sources and installed headers are left alone) and unpacked with dpkg-deb -x into the
# kvmsharp cache. Prints the include directories as `-I DIR -I DIR` on stdout; the layout test reads
# them from KVMSHARP_NEWER_KVM_HEADERS.
set -euo pipefail
KC_PROG=fetch-newer-kvm-headers
# shellcheck source=../guest/debcache.sh
source "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../guest/debcache.sh"

cache=$(kc_cache_dir)/kvm-headers
apt_dir=$cache/apt
mkdir -p "$apt_dir/lists/partial" "$apt_dir/archives/partial"
echo "deb http://deb.debian.org/debian bookworm-backports main" >"$apt_dir/sources.list"
apt_opts=(-o "Dir::Etc::sourcelist=$apt_dir/sources.list" -o "Dir::Etc::sourceparts=-"
          -o "Dir::State::Lists=$apt_dir/lists" -o "Dir::Cache=$apt_dir")
apt-get "${apt_opts[@]}" update -qq >&2 || kc_die "apt-get update of bookworm-backports failed"
version=$(apt-cache "${apt_opts[@]}" policy linux-libc-dev | awk '/Candidate:/ { print $2 }')
[[ -n $version && $version != "(none)" ]] || kc_die "no linux-libc-dev in bookworm-backports"
root=$cache/linux-libc-dev_${version//[:~]/_}
if [[ ! -f $root/usr/include/linux/kvm.h ]]; then
    work=$(mktemp -d)
    (cd "$work" && apt-get "${apt_opts[@]}" download "linux-libc-dev=$version" >&2) || kc_die "apt-get download linux-libc-dev=$version failed"
    mkdir -p "$root.tmp" && dpkg-deb -x "$work"/linux-libc-dev_*.deb "$root.tmp" && rm -rf "$root" && mv "$root.tmp" "$root"
    rm -rf "$work"
    kc_log "linux-libc-dev $version unpacked in $root"
fi
echo "-I $root/usr/include -I $root/usr/include/x86_64-linux-gnu"
