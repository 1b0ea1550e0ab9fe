#!/usr/bin/env bash
# CI boot tests. Run INSIDE the nested testbed (a real SVM KVM with SMM), through
# scripts/testbed/run-in-testbed.sh, from the repository root, after a Release build on the host:
# Debian's cloud kernel with the busybox initramfs of scripts/guest/fetch-guest.sh boots under
# `kvmsharp run --kernel` to its marker with 1 and with 2 vCPUs (the guest reports the CPUs it
# sees), also through the PVH entry of an ELF vmlinux, a guest reboot or poweroff ends the VM with
# status 0, the serial console takes typed input, and
# SMM-address-space memslots work on this KVM, and the virtio checks of disk-tests.sh (root on a
# virtio disk, read-only drive, serials, hwrng, hvc0) and the multiboot check of multiboot-tests.sh
# pass. One line per check, then
# "boot-tests: N passed, N failed". kvmsharp is the NativeAOT binary, the shipped form (the JIT's
# start-up costs ~10 s under TCG): publish it first into artifacts/aot (.ci/run does), or name
# another with KVMSHARP_AOT_BIN.
#
#   KVMSHARP_GUEST_KERNEL=... KVMSHARP_GUEST_INITRD=... tests/testbed/boot-tests.sh
set -uo pipefail

: "${KVMSHARP_GUEST_KERNEL:?set KVMSHARP_GUEST_KERNEL (scripts/guest/fetch-guest.sh prints it)}"
: "${KVMSHARP_GUEST_INITRD:?set KVMSHARP_GUEST_INITRD}"
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
bin=${KVMSHARP_AOT_BIN:-$repo/artifacts/aot/kvmsharp}
[ -x "$bin" ] || { echo "boot-tests: no NativeAOT kvmsharp at $bin: dotnet publish src/KvmSharp -c Release -r linux-x64 -p:PublishAot=true -o artifacts/aot" >&2; exit 2; }
[ -f "$repo/tests/KvmSharp.Benchmarks/bin/Release/net10.0/kvmsharp-bench.dll" ] || { echo "boot-tests: build first: dotnet build KvmSharp.sln -c Release" >&2; exit 2; }
timeout_s=${KVMSHARP_BOOT_TIMEOUT:-300}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
passed=0 failed=0

# boot NAME CPUS CMDLINE-EXTRA KVMSHARP-ARGS...: runs kvmsharp; output in $work/NAME.{out,err}, status in $rc.
boot() {
    local name=$1 cpus=$2 extra=$3
    shift 3
    local start=$(date +%s.%N)
    "$bin" run --kernel "${kernel:-$KVMSHARP_GUEST_KERNEL}" --initrd "$KVMSHARP_GUEST_INITRD" --memory 512M --cpus "$cpus" \
        --cmdline "console=ttyS0 reboot=k panic=-1 quiet $extra" --timeout "$timeout_s" "$@" \
        >"$work/$name.out" 2>"$work/$name.err" </dev/null
    rc=$?
    seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
}

report() { # NAME OK DETAIL
    if [ "$2" = 1 ]; then
        echo "PASS: $1 ($3)"
        passed=$((passed + 1))
    else
        echo "FAIL: $1 ($3)"
        echo "----- stdout (tail) -----"; tail -n 30 "$work/$1.out" 2>/dev/null
        echo "----- stderr (tail) -----"; tail -n 40 "$work/$1.err" 2>/dev/null
        failed=$((failed + 1))
    fi
}

for cpus in 1 2; do
    name=boot-${cpus}cpu
    boot "$name" "$cpus" "kvmsharp.cmd=poweroff" --expect "KVMSHARP-CPUS=$cpus"
    ok=0; [ "$rc" = 0 ] && grep -q "KVMSHARP-GUEST-READY" "$work/$name.out" && ok=1
    report "$name" "$ok" "exit $rc in ${seconds}s; guest saw $(grep -o 'KVMSHARP-CPUS=[0-9]*' "$work/$name.out" | head -1)"
done

boot reboot 1 "kvmsharp.cmd=reboot"
ok=0; [ "$rc" = 0 ] && grep -q "the guest rebooted" "$work/reboot.err" && ok=1
report reboot "$ok" "exit $rc in ${seconds}s: $(grep -o 'the guest rebooted[^)]*)' "$work/reboot.err" | head -1)"

boot poweroff 1 "kvmsharp.cmd=poweroff"
ok=0; [ "$rc" = 0 ] && grep -q "the guest powered off" "$work/poweroff.err" && ok=1
report poweroff "$ok" "exit $rc in ${seconds}s"

# The PVH entry: an uncompressed ELF vmlinux (the testbed's own generic Debian kernel, which the
# testbed script extracts and caches; KVMSHARP_GUEST_VMLINUX overrides).
vmlinux=${KVMSHARP_GUEST_VMLINUX:-$(ls -t "${KVMSHARP_CACHE:-/var/cache/kvmsharp}"/testbed/*/vmlinux 2>/dev/null | head -1)}
if [ -n "$vmlinux" ] && [ -f "$vmlinux" ]; then
    kernel=$vmlinux boot pvh 2 "kvmsharp.cmd=poweroff" --expect "KVMSHARP-CPUS=2"
    ok=0; [ "$rc" = 0 ] && ok=1
    report pvh "$ok" "exit $rc in ${seconds}s, $(basename "$(dirname "$vmlinux")")"
else
    echo "" >"$work/pvh.out"; echo "no vmlinux found" >"$work/pvh.err"
    report pvh 0 "no ELF vmlinux: set KVMSHARP_GUEST_VMLINUX"
fi

# Interactive console: type a command once the shell is up, read its output back; on the 16550
# (console) and on hvc0 with --console virtio (console-hvc0-input: the typed bytes go to hvc0 only).
for console in serial virtio; do
    name=console
    [ "$console" = virtio ] && name=console-hvc0-input
    rm -f "$work/stdin"
    mkfifo "$work/stdin"
    (
        for _ in $(seq 1 "$timeout_s"); do
            grep -q "KVMSHARP-CPUS=" "$work/$name.out" 2>/dev/null && break
            sleep 1
        done
        sleep 3
        printf 'echo typed-$((6*7))\n'
        sleep "$timeout_s"
    ) >"$work/stdin" &
    writer=$!
    start=$(date +%s.%N)
    cmdline="console=ttyS0 reboot=k panic=-1 quiet kvmsharp.cmd=shell"
    [ "$console" = virtio ] && cmdline="console=ttyS0 console=hvc0 reboot=k panic=-1 quiet kvmsharp.cmd=shell"
    "$bin" run --kernel "$KVMSHARP_GUEST_KERNEL" --initrd "$KVMSHARP_GUEST_INITRD" --memory 512M --console "$console" \
        --cmdline "$cmdline" --timeout "$timeout_s" --expect "typed-42" \
        >"$work/$name.out" 2>"$work/$name.err" <"$work/stdin"
    rc=$?
    kill "$writer" 2>/dev/null
    seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    ok=0; [ "$rc" = 0 ] && ok=1
    report "$name" "$ok" "--console $console: exit $rc in ${seconds}s"
done

# SMM memslots (as_id 1) and page tracking in both address spaces, on this SMM-capable KVM (the
# checks of SmmAddressSpaceTests, as a program: VSTest's test host starts too slowly under TCG).
bench=$repo/tests/KvmSharp.Benchmarks/bin/Release/net10.0/kvmsharp-bench.dll
dotnet "$bench" smm-check >"$work/smm.out" 2>&1
rc=$?
cp "$work/smm.out" "$work/smm.err"
ok=0; [ "$rc" = 0 ] && grep -q "smm-check: all passed" "$work/smm.out" && ok=1
report smm "$ok" "$(grep -c '^ok:' "$work/smm.out") checks ok"

# Memslot differential (issue 13) with address space 1: KvmSharp's production memslot stack against
# this kernel, step by step (kvmsharp-bench memslot-differential; 100,000 steps run on the host in CI).
dotnet "$bench" memslot-differential "${KVMSHARP_TESTBED_DIFFERENTIAL_STEPS:-1000}" >"$work/memslot-differential.out" 2>&1
rc=$?
cp "$work/memslot-differential.out" "$work/memslot-differential.err"
ok=0; [ "$rc" = 0 ] && grep -q "^address spaces: 2" "$work/memslot-differential.out" && grep -q "as1-Create=" "$work/memslot-differential.out" && grep -q "memslot-differential: all passed" "$work/memslot-differential.out" && ok=1
report memslot-differential "$ok" "$(grep -o '^[0-9]* steps in [0-9]* sequences' "$work/memslot-differential.out" || echo "exit $rc")"

# Dirty logging (issue 13): the exact-set harvest checks of DirtyLogHarvestTests in every mode this
# KVM offers (bitmap, manual-protect, ring, and a full ring), as a program (kvmsharp-bench dirty-check).
# Passes only when every mode ran and passed: a mode the kernel lacks is a failure here.
dotnet "$bench" dirty-check >"$work/dirty-log.out" 2>&1
rc=$?
cp "$work/dirty-log.out" "$work/dirty-log.err"
ok=0; [ "$rc" = 0 ] && grep -q "^modes run: bitmap manual-protect ring ring-full$" "$work/dirty-log.out" && grep -q "dirty-check: all passed" "$work/dirty-log.out" && ok=1
report dirty-log "$ok" "$(grep -o '^modes run: .*' "$work/dirty-log.out" || echo "exit $rc")"

# Page tracking (issue 9): no locked update on a tracked word lost by 2 and 4 vCPUs, stores KVM's
# emulator refuses (cmpxchg16b, vmovdqu ymm) completed, one report per write instruction, in both
# modes (kvmsharp-bench tracking-check; the lost-update control of TrapWrites is printed, not judged).
dotnet "$bench" tracking-check "${KVMSHARP_TESTBED_TRACKING_ITERATIONS:-300}" >"$work/tracking.out" 2>&1
rc=$?
cp "$work/tracking.out" "$work/tracking.err"
ok=0; [ "$rc" = 0 ] && grep -q "tracking-check: all passed" "$work/tracking.out" && ok=1
report tracking "$ok" "$(grep -o 'tracking-check: .*' "$work/tracking.out" || echo "exit $rc"); $(grep -o 'read cost at CPL3: .*' "$work/tracking.out")"

# Virtio (issue 8): root filesystem on a virtio disk (write, power off, check from the host, read
# back, fsck), a read-only drive, two drives with serials, /dev/hwrng, console on hvc0; two boots
# (tests/testbed/disk-tests.sh; the root image is KVMSHARP_GUEST_ROOTFS from make-rootfs.sh).
. "$repo/tests/testbed/disk-tests.sh"

# Multiboot (issue 11): a test kernel built with Iced checks its multiboot info, fw_cfg and 3 APs
# started by INIT/SIPI, and exits through QEMU's isa-debug-exit (tests/testbed/multiboot-tests.sh).
. "$repo/tests/testbed/multiboot-tests.sh"

# Host directory shares (issue 11): virtio-fs read, write, readonly=on, no escape (tests/testbed/share-tests.sh).
. "$repo/tests/testbed/share-tests.sh"

# virtio-net (issue 11): a tap in a namespace made for the test; ping, MiBs both ways with sha256.
. "$repo/tests/testbed/net-tests.sh"

# vsock (issue 11): Firecracker's hybrid protocol, echo, MIB MiB both ways, 100 connections, abrupt closes (tests/testbed/vsock-tests.sh).
. "$repo/tests/testbed/vsock-tests.sh"

# kvmsharp exec (issue 11): a command in a guest over the host's / (virtio-fs), its stdout, stderr and status (tests/testbed/exec-tests.sh).
. "$repo/tests/testbed/exec-tests.sh"

echo "boot-tests: $passed passed, $failed failed"
[ "$failed" = 0 ]
