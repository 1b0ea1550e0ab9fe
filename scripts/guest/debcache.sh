# shellcheck shell=bash
# Shared helpers for scripts/guest/fetch-guest.sh and scripts/testbed/run-in-testbed.sh: fetch
# Debian packages with `apt-get download` (never installed), keep them in a cache outside the
# repository, and build gzip'd newc initramfs images with the busybox from busybox-static.
#
# Source this file; it defines functions only. Everything it prints goes to stderr, so callers
# keep stdout for their own machine-readable output.
#
# Cache: $KVMSHARP_CACHE, else /var/cache/kvmsharp when that is writable (root), else
# ${XDG_CACHE_HOME:-~/.cache}/kvmsharp. Nothing fetched is ever written under the repository.

kc_log() { echo "${KC_PROG:-kvmsharp}: $*" >&2; }
kc_die() { kc_log "$*"; exit 1; }

# Prints the cache directory, creating it.
kc_cache_dir() {
    local dir=${KVMSHARP_CACHE:-}
    if [[ -z $dir ]]; then
        if mkdir -p /var/cache/kvmsharp 2>/dev/null && [[ -w /var/cache/kvmsharp ]]; then
            dir=/var/cache/kvmsharp
        else
            dir=${XDG_CACHE_HOME:-$HOME/.cache}/kvmsharp
        fi
    fi
    mkdir -p "$dir" || kc_die "cannot create cache directory $dir (set KVMSHARP_CACHE)"
    (cd "$dir" && pwd -P)
}

# Runs "$@" holding an exclusive lock on the cache, so two concurrent callers do not download or
# build the same thing at once (the builds themselves publish with an atomic rename anyway).
kc_locked() {
    local lock
    lock="$(kc_cache_dir)/.lock"
    (
        flock -w 900 9 || kc_die "timed out waiting for the cache lock $lock"
        "$@"
    ) 9>"$lock"
}

# A version string made safe for a path component (epochs have ':').
kc_sanitize() { printf '%s' "$1" | tr -c 'A-Za-z0-9.+_-' '_'; }

# Prints the candidate versions apt would download for packages "$@", one "name version" line
# each, in one apt-cache run (apt-cache is slow here: ~1.5 s a call, no pkgcache.bin in Docker).
kc_candidates() {
    LC_ALL=C apt-cache policy "$@" 2>/dev/null | awk '
        /^[^ ].*:$/ { pkg = substr($0, 1, length($0) - 1) }
        /^ *Candidate:/ { if ($2 != "(none)") print pkg, $2 }'
}

# Prints "KERNEL_PKG KERNEL_VERSION BUSYBOX_VERSION" for flavour $1 (e.g. cloud-amd64): the concrete
# linux-image-6.1.0-NN-<flavour> package the meta-package linux-image-<flavour> depends on, its
# candidate version, and the candidate version of busybox-static. Prints nothing when apt cannot
# resolve them. KVMSHARP_KERNEL_ABI (e.g. 6.1.0-56) pins the ABI instead of following the
# meta-package. The answer is memoised until the apt package lists change, so a cached call
# does not pay for apt-cache at all.
kc_resolve_kernel() {
    local flavour=$1 memo stamp line kpkg
    memo="$(kc_cache_dir)/resolve/${flavour}+${KVMSHARP_KERNEL_ABI:-meta}"
    stamp=$( (stat -c '%n %Y %s' /var/lib/apt/lists/*Packages* /etc/apt/sources.list \
        /etc/apt/sources.list.d/* 2>/dev/null || true) | kc_hash)
    if [[ -s $memo ]] && [[ $(head -n1 "$memo") == "$stamp" ]]; then
        sed -n 2p "$memo"
        return
    fi
    if [[ -n ${KVMSHARP_KERNEL_ABI:-} ]]; then
        kpkg="linux-image-${KVMSHARP_KERNEL_ABI}-${flavour}"
    else
        kpkg=$(LC_ALL=C apt-cache depends "linux-image-${flavour}" 2>/dev/null |
            awk -v f="$flavour" '$1 == "Depends:" && $2 ~ ("^linux-image-[0-9].*-" f "$") { print $2; exit }')
    fi
    [[ -n $kpkg ]] || return 0
    line=$(kc_candidates "$kpkg" busybox-static | awk -v k="$kpkg" '
        $1 == k { kv = $2 } $1 == "busybox-static" { bv = $2 }
        END { if (kv != "" && bv != "") print k, kv, bv }')
    [[ -n $line ]] || return 0
    mkdir -p "${memo%/*}"
    printf '%s\n%s\n' "$stamp" "$line" >"$memo.tmp" && mv "$memo.tmp" "$memo"
    echo "$line"
}

# Newest cached artifact directory under $1 whose name matches the glob $2 (offline fallback when
# apt cannot resolve versions, e.g. `apt-get update` never ran).
kc_newest_cached() {
    local base=$1 pattern=$2
    [[ -d $base ]] || return 0
    find "$base" -mindepth 1 -maxdepth 1 -type d -name "$pattern" -printf '%T@ %p\n' 2>/dev/null |
        sort -rn | awk 'NR == 1 { print $2 }'
}

# Prints the path of the cached .deb for package $1 at version $2, downloading it if needed.
kc_fetch_deb() {
    local pkg=$1 ver=$2 debs tmp f
    debs="$(kc_cache_dir)/debs"
    mkdir -p "$debs"
    f="$debs/${pkg}_$(kc_sanitize "$ver").deb"
    if [[ ! -s $f ]]; then
        kc_log "downloading $pkg=$ver"
        tmp=$(mktemp -d "$debs/.dl.XXXXXX")
        # apt's sandbox user (_apt) cannot write into a root-only directory; as root download as root.
        local -a opts=()
        [[ $(id -u) == 0 ]] && opts=(-o APT::Sandbox::User=root)
        if ! (cd "$tmp" && apt-get download -q "${opts[@]}" "$pkg=$ver" >&2); then
            rm -rf "$tmp"
            kc_die "apt-get download $pkg=$ver failed (is the package index current? try: apt-get update)"
        fi
        mv "$tmp"/*.deb "$f"
        rm -rf "$tmp"
    fi
    echo "$f"
}

# Unpacks the whole .deb $1 into directory $2 (no maintainer scripts run, nothing installed).
kc_unpack_deb() {
    mkdir -p "$2"
    dpkg-deb -x "$1" "$2" || kc_die "dpkg-deb -x $1 failed"
}

# Fills root directory $2 with busybox from the unpacked busybox-static tree $1: /bin/busybox
# plus one symlink per applet (busybox --list-full gives bin/sh, sbin/insmod, usr/bin/... paths),
# so /init scripts can call applets by name without `busybox --install` at boot.
kc_install_busybox() {
    local src=$1 root=$2 applet
    [[ -x $src/bin/busybox ]] || kc_die "no bin/busybox in $src"
    mkdir -p "$root/bin" "$root/sbin" "$root/usr/bin" "$root/usr/sbin"
    cp "$src/bin/busybox" "$root/bin/busybox"
    while read -r applet; do
        [[ -z $applet || $applet == bin/busybox ]] && continue
        [[ -e $root/$applet || -L $root/$applet ]] && continue
        mkdir -p "$root/$(dirname "$applet")"
        ln -s /bin/busybox "$root/$applet"
    done < <("$root/bin/busybox" --list-full)
}

# Creates the directories and device nodes every initramfs here needs. The kernel's built-in
# initramfs normally provides /dev/console, but an explicit node costs nothing and keeps /init's
# stdout working on kernels built otherwise.
kc_skeleton() {
    local root=$1
    mkdir -p "$root"/{dev,proc,sys,tmp,root,etc,mnt,run}
    chmod 1777 "$root/tmp"
    if [[ $(id -u) == 0 ]]; then
        [[ -e $root/dev/console ]] || mknod -m 600 "$root/dev/console" c 5 1
        [[ -e $root/dev/null ]] || mknod -m 666 "$root/dev/null" c 1 3
    fi
}

# Packs directory $1 into a gzip'd newc cpio archive $2, owned by root:root inside, with the
# busybox in $1/bin/busybox, or the busybox binary $3 (so the host needs no cpio package). Written
# to a temp file and renamed, so a reader never sees half an archive.
kc_pack_initramfs() {
    local root=$1 out=$2 busybox=${3:-$1/bin/busybox}
    (
        cd "$root"
        find . -mindepth 1 | LC_ALL=C sort | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null
    ) | gzip -9 -n >"$out.tmp" || kc_die "packing the initramfs $out failed"
    mv "$out.tmp" "$out"
}

# Prints the path of a busybox binary from busybox-static (cached; for packing initrd layers).
kc_busybox_binary() {
    local ver dir
    ver=$(kc_candidates busybox-static | awk '$1 == "busybox-static" { print $2 }')
    if [[ -z $ver ]]; then
        dir=$(kc_newest_cached "$(kc_cache_dir)/busybox" 'busybox-static_*')
        [[ -n $dir ]] || kc_die "apt cannot resolve busybox-static and nothing is cached; run: apt-get update"
    else
        dir="$(kc_cache_dir)/busybox/busybox-static_$(kc_sanitize "$ver")"
        if [[ ! -x $dir/busybox ]]; then
            local deb tmp
            deb=$(kc_fetch_deb busybox-static "$ver")
            mkdir -p "${dir%/*}"
            tmp=$(mktemp -d "${dir%/*}/.unpack.XXXXXX")
            dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" ./bin/busybox || kc_die "no bin/busybox in $deb"
            mkdir -p "$dir"
            mv "$tmp/bin/busybox" "$dir/busybox"
            rm -rf "$tmp"
        fi
    fi
    echo "$dir/busybox"
}

# Writes the uncompressed ELF vmlinux embedded in bzImage $1 to $2 (what extract-vmlinux does):
# try each xz, zstd or gzip stream start in turn until one decompresses to an ELF file. Booting
# that ELF through PVH skips the in-guest decompression, which under TCG costs ~10 s.
kc_extract_vmlinux() {
    local bz=$1 out=$2 magic tool off
    for magic in $'\xfd7zXZ:xz' $'\x28\xb5\x2f\xfd:zstd' $'\x1f\x8b\x08:gzip'; do
        tool=${magic##*:}
        command -v "$tool" >/dev/null || continue
        while read -r off; do
            { tail -c "+$((off + 1))" "$bz" | "$tool" -dc >"$out.tmp" 2>/dev/null; } || true
            if [[ $(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' ') == 7f454c46 ]]; then
                mv "$out.tmp" "$out"
                return 0
            fi
        done < <(LC_ALL=C grep -obUa "${magic%:*}" "$bz" | cut -d: -f1)
    done
    rm -f "$out.tmp"
    return 1
}

# Prints a short content hash of stdin (cache keys for generated /init scripts and module lists).
kc_hash() { sha256sum | cut -c1-12; }

# Decompressed contents of the kernel module file $1 (busybox insmod reads no compressed modules).
kc_module_text() {
    case $1 in
        *.xz) xz -dc "$1" ;;
        *.zst) zstd -qdc "$1" ;;
        *.gz) gzip -dc "$1" ;;
        *) cat "$1" ;;
    esac
}

# Copies kernel modules "${@:3}" and everything they need from the unpacked module tree $1
# (.../lib/modules/<release>) into directory $2 as flat, uncompressed NAME.ko files, and writes
# $2/load-order: one name a line, each after its dependencies. Dependencies are each module's
# depends= field, plus its crypto soft dependencies (softdep=pre: crypto-crc32c: ext4 and jbd2
# ask the crypto API for crc32c at mount time, and without modprobe nothing would load it). Modules
# built into the kernel (modules.builtin) are skipped, so one list serves the cloud flavour (ext4
# built in) and the generic one (ext4 a module). Names treat - and _ alike, as the kernel does.
kc_collect_modules() {
    local tree=$1 out=$2 f n
    shift 2
    [[ -d $tree ]] || kc_die "no module tree at $tree"
    local -A file_of=() builtin=() seen=()
    local -a order=()
    while IFS= read -r f; do
        n=${f##*/}
        n=${n%%.ko*}
        file_of[${n//-/_}]=$f
    done < <(find "$tree" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')
    if [[ -f $tree/modules.builtin ]]; then
        while IFS= read -r f; do
            n=${f##*/}
            n=${n%%.ko*}
            builtin[${n//-/_}]=1
        done <"$tree/modules.builtin"
    fi
    _kc_visit() {
        local name=${1//-/_} optional=${2:-} file info deps soft d
        [[ -n ${seen[$name]:-} || -n ${builtin[$name]:-} ]] && return 0
        file=${file_of[$name]:-}
        if [[ -z $file ]]; then
            [[ -n $optional ]] && return 0
            kc_die "kernel module $1 is neither in $tree nor built in (renamed?)"
        fi
        seen[$name]=1
        info=$(kc_module_text "$file" | tr '\0' '\n' | grep -aE '^(depends|softdep)=' || true)
        deps=$(sed -n 's/^depends=//p' <<<"$info" | head -n1)
        for d in ${deps//,/ }; do _kc_visit "$d"; done
        # "softdep=pre: crypto-crc32c post: ..." -> the generic implementation of each crypto- name.
        soft=$(sed -n 's/^softdep=//p' <<<"$info" | awk '{ for (i = 1; i <= NF; i++) { if ($i == "pre:") p = 1; else if ($i ~ /:$/) p = 0; else if (p) print $i } }')
        for d in $soft; do
            [[ $d == crypto-* ]] || continue
            d=${d#crypto-}
            if [[ -n ${file_of[${d//-/_}_generic]:-} || -n ${builtin[${d//-/_}_generic]:-} ]]; then
                _kc_visit "${d}_generic" optional
            else
                _kc_visit "$d" optional
            fi
        done
        order+=("$name")
    }
    for n in "$@"; do _kc_visit "$n"; done
    mkdir -p "$out"
    for n in "${order[@]}"; do
        kc_module_text "${file_of[$n]}" >"$out/$n.ko" || kc_die "cannot copy module $n"
    done
    printf '%s\n' "${order[@]}" >"$out/load-order"
}
