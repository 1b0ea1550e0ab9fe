#!/usr/bin/env bash
# Runs a shell command inside the nested KVM testbed: an L1 Linux booted under QEMU TCG emulating
# an AMD CPU with SVM, whose kvm-amd gives a real KVM (with SMM, two memslot address spaces) that
# the host's PVM KVM lacks. See /work/shared/DESIGN.md, "Facts about the machines here".
#
#   scripts/testbed/run-in-testbed.sh 'ls /dev/kvm && exit 3'; echo $?      # prints /dev/kvm, 3
#
# Inside L1 the command sees the host's whole filesystem (9p, read-only), made writable by an
# overlay whose upper layer is L1 RAM (default TESTBED_ROOT=overlay): builds may write bin/, obj/,
# ~/.dotnet… and every write is discarded at the end; the host is never modified. It runs as root
# via `sh -c` in a chroot of that tree, in the directory this script was called from, with
# /dev/kvm, /proc, /sys, /dev/pts, /dev/shm mounted, stdin /dev/null and no network. The writable
# layer is a tmpfs of half the L1 RAM (~2 GiB by default). The 9p root is cached loosely: files
# the host changes during a run may look stale inside. What survives the run:
#   - its stdout and stderr, streamed to this script's stdout (over a second serial port, so the
#     L1 kernel's console messages, which go to the first, never mix in);
#   - its exit status, which becomes this script's;
#   - files it writes under $KVMSHARP_TESTBED_OUT (a writable 9p share of a host directory, at
#     the same path inside and out; TESTBED_OUT names it, default a temp dir deleted afterwards);
#   - files under the TESTBED_RW directories (writable 9p shares, same paths).
# Environment inside: PATH (yours), HOME=/root, DOTNET_CLI_HOME (yours, else /root),
# DOTNET_SKIP_FIRST_TIME_EXPERIENCE=1, DOTNET_NOLOGO=1 (unless you set them), every KVMSHARP_*
# variable you have, the variables named in TESTBED_ENV, KVMSHARP_TESTBED=1 and
# KVMSHARP_TESTBED_OUT. NuGet cannot download in there: restore on the host first.
#
# Exit status: the command's; 124 when TESTBED_TIMEOUT expired (QEMU killed); 125 when the testbed
# itself failed (the reason, the L1 console tail and QEMU's messages are printed on stderr).
#
# The L1 kernel is Debian's linux-image-<abi>-amd64 (not -cloud: it has 9p and overlay as
# modules), and the L1 initramfs is busybox-static plus the modules insmod'ed in passes; both are
# fetched with apt-get download and built once into $KVMSHARP_CACHE (scripts/guest/debcache.sh).
# A cached run takes ~8-12 s of wall time plus the command (about 7 s of it is L1 booting).

# Functions here run through kc_locked and traps, which shellcheck cannot follow.
# shellcheck disable=SC2317
set -euo pipefail

KC_PROG='run-in-testbed'
here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
# shellcheck source=scripts/guest/debcache.sh
. "$here/../guest/debcache.sh"

usage() {
    cat >&2 <<'USAGE'
usage: scripts/testbed/run-in-testbed.sh CMD [ARG...]
Boots the nested-KVM L1 (QEMU TCG, EPYC with SVM) and runs `sh -c "CMD ARG..."` there as root,
in the current directory, with the host's filesystem (read-only, overlaid with a throw-away
writable layer) and /dev/kvm. Its output streams to stdout; its exit status is returned
(124: timeout, 125: testbed failure).
environment:
  TESTBED_TIMEOUT=1800   seconds before QEMU is killed (exit 124)
  TESTBED_MEM=           L1 RAM in MiB (default 4096 when the host has 6 GiB available, else 2048)
  TESTBED_SMP=1          L1 vCPUs (multi-threaded TCG, one host thread each). 1 by default: with 2,
                         L1 was seen soft-locking up (both CPUs stuck) while an L2 VM ended
  TESTBED_CPU=EPYC,+svm,+npt   QEMU -cpu for L1
  TESTBED_ROOT=overlay   overlay: writable throw-away root; ro: read-only root (tmpfs /tmp)
  TESTBED_OUT=           host directory shared writable at the same path, also exported inside
                         as KVMSHARP_TESTBED_OUT (default: a temp dir, deleted afterwards)
  TESTBED_RW=            colon-separated host directories shared read-write at the same paths
  TESTBED_ENV=           extra variable names to pass into L1 (space-separated)
  TESTBED_KEEP=1         keep the run directory (console.log, qemu.log) and print its path
  TESTBED_APPEND=        extra L1 kernel command-line arguments
  TESTBED_BOOT=pvh       pvh: boot the uncompressed vmlinux (faster under TCG); bzimage: vmlinuz
  TESTBED_VERBOSE=1      report the command's status and the wall time on stderr
  KVMSHARP_CACHE=        cache directory (default /var/cache/kvmsharp)
  KVMSHARP_KERNEL_ABI=   pin the L1 kernel ABI (e.g. 6.1.0-56) instead of linux-image-amd64's
USAGE
}

(($#)) || { usage; exit 2; }
case $1 in -h | --help) usage; exit 0 ;; esac
cmd="$*"

timeout_s=${TESTBED_TIMEOUT:-1800}
smp=${TESTBED_SMP:-1}
cpu=${TESTBED_CPU:-EPYC,+svm,+npt}
rootmode=${TESTBED_ROOT:-overlay}
if ! [[ $timeout_s =~ ^[0-9]+$ ]] || ((timeout_s == 0)); then
    kc_die "TESTBED_TIMEOUT must be a positive number of seconds"
fi
if ! [[ $smp =~ ^[0-9]+$ ]] || ((smp == 0)); then
    kc_die "TESTBED_SMP must be a positive number"
fi
[[ $rootmode == overlay || $rootmode == ro ]] || kc_die "TESTBED_ROOT must be overlay or ro"
if [[ -n ${TESTBED_MEM:-} ]]; then
    mem=$TESTBED_MEM
    [[ $mem =~ ^[0-9]+$ ]] || kc_die "TESTBED_MEM is a number of MiB"
else
    # 4 GiB leaves room for dotnet builds in the RAM-backed overlay; fall back on small hosts.
    avail_kib=$(awk '/^MemAvailable:/ { print $2 }' /proc/meminfo)
    mem=2048
    ((avail_kib >= 6 * 1024 * 1024)) && mem=4096
fi

# ---- QEMU --------------------------------------------------------------------------------------
if ! command -v qemu-system-x86_64 >/dev/null; then
    [[ $(id -u) == 0 ]] || kc_die "qemu-system-x86_64 is missing: apt-get install qemu-system-x86"
    kc_log "installing qemu-system-x86 (apt-get)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends qemu-system-x86 >&2 ||
        kc_die "apt-get install qemu-system-x86 failed (try apt-get update first)"
fi

# ---- L1 kernel + initramfs (cached) ----------------------------------------------------------------
# Modules kvm-amd and the 9p root need, plus overlay for the writable root and tun for the
# virtio-net tests' taps. Their dependencies
# (the depends= field of each .ko) are added when the initramfs is built, and the load order
# puts dependencies first; /init still loads in repeated passes as a safety net.
MODULES="ccp irqbypass kvm kvm-amd virtio virtio_ring virtio_pci_modern_dev virtio_pci_legacy_dev
virtio_pci netfs fscache 9pnet 9pnet_virtio 9p overlay tun"

# The L1 /init (busybox sh). Console (ttyS0) carries the kernel's messages and init's own
# diagnostics into console.log on the host; the command's output goes to ttyS1, QEMU's stdout.
read -r -d '' L1_INIT <<'INIT_EOF' || true
#!/bin/sh
# KvmSharp testbed L1 /init, generated by scripts/testbed/run-in-testbed.sh.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

say() { echo "testbed-init: $*" >/dev/console; }
# Report why the testbed could not run the command (the host prints /ctl/error), then power off.
bail() {
    say "$*"
    mountpoint -q /ctl 2>/dev/null && echo "$*" >/ctl/error
    sync
    poweroff -f
    sleep 30
    exit 1
}

# No modprobe and no modules.dep here: insmod in passes until nothing more loads.
left=$(cat /lib/modules/load-order)
while [ -n "$left" ]; do
    next=
    for m in $left; do
        insmod "/lib/modules/$m.ko" 2>/dev/null || next="$next $m"
    done
    if [ "$(echo $next)" = "$(echo $left)" ]; then
        for m in $next; do insmod "/lib/modules/$m.ko" >/dev/console 2>&1; done
        bail "modules that would not load:$next"
    fi
    left=$next
done
[ -c /dev/kvm ] || bail "no /dev/kvm after loading kvm-amd (does the L1 CPU have svm?)"

O9=trans=virtio,version=9p2000.L,msize=262144
mkdir -p /lower /ctl /out /host
mount -t 9p -o "$O9" tbctl /ctl || bail "cannot mount the control share (9p tag tbctl)"
mount -t 9p -o "$O9,cache=loose,ro" hostroot /lower || bail "cannot mount the host root (9p tag hostroot)"
mount -t 9p -o "$O9" tbout /out || bail "cannot mount the output share (9p tag tbout)"
. /ctl/job.conf || bail "cannot read /ctl/job.conf"

if [ "$TB_ROOT" = overlay ]; then
    # Writes land in L1 RAM and vanish at power-off; the host tree stays untouched.
    mkdir -p /rw && mount -t tmpfs -o mode=0755 tmpfs /rw && mkdir -p /rw/upper /rw/work ||
        bail "cannot set up the overlay's tmpfs"
    mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /host ||
        bail "cannot mount the overlay root"
else
    mount --bind /lower /host || bail "cannot bind the host root"
fi
mount -t proc proc /host/proc &&
    mount -t sysfs sysfs /host/sys &&
    mount -t devtmpfs devtmpfs /host/dev &&
    mkdir -p /host/dev/pts /host/dev/shm &&
    mount -t devpts -o ptmxmode=0666 devpts /host/dev/pts &&
    mount -t tmpfs -o mode=1777 tmpfs /host/dev/shm &&
    mount -t tmpfs -o mode=0755 tmpfs /host/run ||
    bail "cannot mount proc/sys/dev/run inside the host root"
if [ "$TB_ROOT" != overlay ]; then
    mount -t tmpfs -o mode=1777 tmpfs /host/tmp || bail "cannot mount a tmpfs on /tmp"
fi
mkdir -p "/host$TB_OUT" && mount --bind /out "/host$TB_OUT" || bail "cannot bind the output share at $TB_OUT"
printf '%s\n' "$TB_RW" | while read -r tag path; do
    [ -n "$tag" ] || continue
    mkdir -p "/host$path" && mount -t 9p -o "$O9" "$tag" "/host$path" ||
        bail "cannot mount the writable share $path (9p tag $tag)"
done
mkdir -p /host/run/kvmsharp-testbed && cp /ctl/job.sh /host/run/kvmsharp-testbed/job.sh ||
    bail "cannot copy the job script"

# The command's output channel: ttyS1, raw (no \n -> \r\n, no echo).
exec 3<>/dev/ttyS1 || bail "no /dev/ttyS1"
stty raw -echo <&3
chroot /host /usr/bin/env -i /bin/sh /run/kvmsharp-testbed/job.sh </dev/null >&3 2>&3
rc=$?
# stty sets the mode with TCSADRAIN: returns once the UART has sent everything queued.
stty raw -echo <&3
echo "$rc" >/ctl/status || bail "cannot write the exit status"
sync
poweroff -f
sleep 30
INIT_EOF

cache=$(kc_cache_dir)
tbase="$cache/testbed"
# Bump when the cache layout changes (2: vmlinux for PVH boot).
CACHE_REV=2
key_suffix="+$(printf '%s\n%s\n%s\n' "$CACHE_REV" "$L1_INIT" "$MODULES" | kc_hash)"
kpkg='' kver='' bbver=''
read -r kpkg kver bbver < <(kc_resolve_kernel amd64) || true
if [[ -z $kpkg || -z $kver || -z $bbver ]]; then
    [[ -z ${KVMSHARP_KERNEL_ABI:-} ]] ||
        kc_die "apt does not know linux-image-${KVMSHARP_KERNEL_ABI}-amd64 (KVMSHARP_KERNEL_ABI); try: apt-get update"
    l1dir=$(kc_newest_cached "$tbase" "linux-image-*-amd64_*${key_suffix}")
    [[ -n $l1dir ]] || kc_die "apt cannot resolve linux-image-amd64 / busybox-static and nothing is cached; run: apt-get update"
    kc_log "apt cannot resolve package versions; using cached $(basename "$l1dir")"
else
    l1dir="$tbase/${kpkg}_$(kc_sanitize "$kver")+bb$(kc_sanitize "$bbver")${key_suffix}"
fi

build_l1() {
    [[ -s $l1dir/vmlinuz && -s $l1dir/initrd.img ]] && return 0
    local tmp kdeb bdeb
    mkdir -p "$tbase"
    tmp=$(mktemp -d "$tbase/.build.XXXXXX")
    # shellcheck disable=SC2064 # expand now: $tmp is local, the trap runs when the subshell ends
    trap "rm -rf '$tmp'" EXIT
    kdeb=$(kc_fetch_deb "$kpkg" "$kver")
    bdeb=$(kc_fetch_deb busybox-static "$bbver")
    kc_log "unpacking $kpkg"
    mkdir -p "$tmp/k"
    dpkg-deb --fsys-tarfile "$kdeb" | tar -x -C "$tmp/k" --wildcards './boot/vmlinuz-*' './lib/modules/*' ||
        kc_die "unpacking $kdeb failed"
    kc_unpack_deb "$bdeb" "$tmp/bb"

    # Index the modules by name (- and _ are the same to the kernel).
    local -A file_of=()
    local f n
    while IFS= read -r f; do
        n=${f##*/}
        n=${n%%.ko*}
        file_of[${n//-/_}]=$f
    done < <(find "$tmp/k/lib/modules" -name '*.ko' -o -name '*.ko.xz' -o -name '*.ko.zst' -o -name '*.ko.gz')

    # Depth-first over depends= so each module comes after what it needs.
    local -A seen=()
    local -a order=()
    visit() {
        local name=${1//-/_} file deps d
        [[ -n ${seen[$name]:-} ]] && return 0
        seen[$name]=1
        file=${file_of[$name]:-}
        [[ -n $file ]] || kc_die "module $1 is not in $kpkg (built in? renamed?)"
        deps=$(module_text "$file" | tr '\0' '\n' | sed -n 's/^depends=//p' | head -n1)
        for d in ${deps//,/ }; do visit "$d"; done
        order+=("$name")
    }
    # Decompressed module contents: busybox insmod does not read compressed modules.
    module_text() {
        case $1 in
            *.xz) xz -dc "$1" ;;
            *.zst) zstd -qdc "$1" ;;
            *.gz) gzip -dc "$1" ;;
            *) cat "$1" ;;
        esac
    }
    local m
    for m in $MODULES; do visit "$m"; done

    kc_skeleton "$tmp/root"
    kc_install_busybox "$tmp/bb" "$tmp/root"
    mkdir -p "$tmp/root/lib/modules"
    for m in "${order[@]}"; do
        module_text "${file_of[$m]}" >"$tmp/root/lib/modules/$m.ko"
    done
    printf '%s\n' "${order[@]}" >"$tmp/root/lib/modules/load-order"
    printf '%s\n' "$L1_INIT" >"$tmp/root/init"
    chmod 755 "$tmp/root/init"

    mkdir -p "$tmp/out"
    cp "$(find "$tmp/k/boot" -name 'vmlinuz-*' | head -n1)" "$tmp/out/vmlinuz"
    # The uncompressed ELF, for PVH boot (saves the kernel's own decompression under TCG).
    kc_extract_vmlinux "$tmp/out/vmlinuz" "$tmp/out/vmlinux" ||
        kc_log "could not extract vmlinux from the bzImage; will boot the bzImage"
    kc_pack_initramfs "$tmp/root" "$tmp/out/initrd.img"
    rm -rf "$l1dir"
    mv "$tmp/out" "$l1dir"
    kc_log "built $l1dir (modules: ${order[*]})"
}
if [[ ! -s $l1dir/vmlinuz || ! -s $l1dir/initrd.img ]]; then
    kc_locked build_l1
fi

# ---- the run -----------------------------------------------------------------------------------
run=$(mktemp -d "${TMPDIR:-/tmp}/kvmsharp-testbed.XXXXXX")
cleanup() {
    if [[ -n ${TESTBED_KEEP:-} ]]; then
        kc_log "run directory kept: $run"
    else
        rm -rf "$run"
    fi
}
trap cleanup EXIT
mkdir -p "$run/ctl"
if [[ -n ${TESTBED_OUT:-} ]]; then
    mkdir -p "$TESTBED_OUT"
    out=$(cd "$TESTBED_OUT" && pwd -P)
else
    out="$run/out"
    mkdir -p "$out"
fi

# Single-quote a value for sh (the job script runs under the host's /bin/sh, dash).
sq() { printf "'%s'" "${1//\'/\'\\\'\'}"; }

# Paths go into a shell script and onto mount(8) lines: refuse newlines.
check_path() { [[ $1 == /* && $1 != *$'\n'* ]] || kc_die "unusable path for the testbed: $1"; }
check_path "$out"
check_path "$PWD"

rw_conf=
rw_args=()
if [[ -n ${TESTBED_RW:-} ]]; then
    i=0
    IFS=: read -r -a rw_dirs <<<"$TESTBED_RW"
    for d in "${rw_dirs[@]}"; do
        [[ -n $d ]] || continue
        [[ -d $d ]] || kc_die "TESTBED_RW: no such directory $d"
        d=$(cd "$d" && pwd -P)
        check_path "$d"
        [[ $d != *' '* ]] || kc_die "TESTBED_RW: paths with spaces are not supported: $d"
        rw_conf+="tbrw$i $d"$'\n'
        rw_args+=(-virtfs "local,path=$d,mount_tag=tbrw$i,security_model=none,multidevs=remap")
        i=$((i + 1))
    done
fi

{
    echo "TB_ROOT=$(sq "$rootmode")"
    echo "TB_OUT=$(sq "$out")"
    echo "TB_RW=$(sq "$rw_conf")"
} >"$run/ctl/job.conf"

{
    echo "# generated by scripts/testbed/run-in-testbed.sh"
    echo "cd -- $(sq "$PWD") || { echo 'testbed: cannot cd to '$(sq "$PWD")' inside L1' >&2; exit 125; }"
    echo "export PATH=$(sq "$PATH")"
    echo "export HOME=/root"
    echo "export DOTNET_CLI_HOME=$(sq "${DOTNET_CLI_HOME:-/root}")"
    echo "export DOTNET_SKIP_FIRST_TIME_EXPERIENCE=$(sq "${DOTNET_SKIP_FIRST_TIME_EXPERIENCE:-1}")"
    echo "export DOTNET_NOLOGO=$(sq "${DOTNET_NOLOGO:-1}")"
    echo "export KVMSHARP_TESTBED=1"
    echo "export KVMSHARP_TESTBED_OUT=$(sq "$out")"
    while IFS= read -r name; do
        [[ $name == KVMSHARP_TESTBED || $name == KVMSHARP_TESTBED_OUT ]] && continue
        echo "export $name=$(sq "${!name}")"
    done < <(compgen -e | grep '^KVMSHARP_' || true)
    for name in ${TESTBED_ENV:-}; do
        [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]] || kc_die "TESTBED_ENV: bad variable name $name"
        [[ -n ${!name+set} ]] && echo "export $name=$(sq "${!name}")"
    done
    echo "exec /bin/sh -c $(sq "$cmd")"
} >"$run/ctl/job.sh"

# PVH entry into the uncompressed ELF when we have it: decompressing the bzImage under TCG takes
# about 10 s. TESTBED_BOOT=bzimage uses the ordinary boot protocol instead.
kernel=$l1dir/vmlinuz
case ${TESTBED_BOOT:-pvh} in
    pvh) [[ -s $l1dir/vmlinux ]] && kernel=$l1dir/vmlinux ;;
    bzimage) ;;
    *) kc_die "TESTBED_BOOT must be pvh or bzimage" ;;
esac

# Serial ports: ttyS0 = L1 console -> console.log; ttyS1 = the command's output -> our stdout.
# stdin is /dev/null so QEMU neither reads the caller's terminal nor changes its modes.
# -no-reboot + reboot=t/panic=-1: any reboot or panic in L1 ends QEMU instead of looping.
# shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
qemu=(
    qemu-system-x86_64 -M pc -accel tcg,thread=multi -cpu "$cpu" -m "$mem" -smp "$smp"
    -nodefaults -no-user-config -display none -monitor none -no-reboot
    -serial "file:$run/console.log" -serial stdio
    -virtfs "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap"
    -virtfs "local,path=$run/ctl,mount_tag=tbctl,security_model=none"
    -virtfs "local,path=$out,mount_tag=tbout,security_model=none,multidevs=remap"
    "${rw_args[@]}"
    -kernel "$kernel" -initrd "$l1dir/initrd.img"
    -append "console=ttyS0 quiet loglevel=3 reboot=t panic=-1 mitigations=off ${TESTBED_APPEND:-}"
)
start=$(date +%s.%N)
# QEMU runs in the background and we `wait`: a shell defers traps while a foreground child
# runs, and `timeout` puts QEMU in its own process group, so a ^C or a SIGTERM sent to this script
# would otherwise not stop the testbed. The handler passes the signal on (timeout relays it).
timeout --kill-after=10 "$timeout_s" "${qemu[@]}" </dev/null 2>"$run/qemu.log" &
qpid=$!
on_signal() {
    trap - INT TERM HUP
    kc_log "interrupted; stopping QEMU"
    kill -TERM "$qpid" 2>/dev/null || true
    wait "$qpid" 2>/dev/null || true
    exit "$1"
}
trap 'on_signal 130' INT
trap 'on_signal 143' TERM
trap 'on_signal 129' HUP
set +e
wait "$qpid"
qrc=$?
set -e
trap - INT TERM HUP
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')

show_diagnostics() {
    [[ -s $run/ctl/error ]] && kc_log "L1 init: $(cat "$run/ctl/error")"
    if [[ -s $run/console.log ]]; then
        kc_log "last lines of the L1 console:"
        tail -n 30 "$run/console.log" | tr -d '\r' | sed 's/^/  | /' >&2
    fi
    local said
    said=$(grep -v "TCG doesn't support requested feature" "$run/qemu.log" 2>/dev/null | tail -n 20 || true)
    if [[ -n $said ]]; then
        kc_log "QEMU said:"
        printf '%s\n' "$said" | sed 's/^/  | /' >&2
    fi
}

if ((qrc == 124 || qrc == 137)); then
    kc_log "timed out after ${timeout_s} s (TESTBED_TIMEOUT); QEMU killed"
    show_diagnostics
    exit 124
fi
if [[ ! -s $run/ctl/status ]]; then
    kc_log "the testbed failed after ${elapsed} s (QEMU exit status $qrc) before the command finished"
    show_diagnostics
    exit 125
fi
status=$(cat "$run/ctl/status")
[[ -n ${TESTBED_VERBOSE:-} ]] && kc_log "command exited with $status after ${elapsed} s in the testbed"
exit "$status"
