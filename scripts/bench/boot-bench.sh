#!/usr/bin/env bash
# Boot benchmark, run INSIDE the nested testbed (scripts/bench.sh boot does that): the same Debian
# kernel, initrd and command line boot to the same marker line under KvmSharp and under QEMU
# (-kernel, microvm: the fastest machine type that boots it here), alternating, several times
# each. Time is wall time from starting the VMM process to the marker on its console (both then
# stop). Prints every round, both medians and, last, ratio=X.XX (KvmSharp / QEMU).
set -euo pipefail

: "${KVMSHARP_GUEST_KERNEL:?}" "${KVMSHARP_GUEST_INITRD:?}"
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
dll=$repo/src/KvmSharp/bin/Release/net10.0/kvmsharp.dll
rounds=${BENCH_BOOT_ROUNDS:-3}
marker=KVMSHARP-CPUS=1
cmdline="console=ttyS0 reboot=k panic=-1 quiet kvmsharp.cmd=poweroff"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
elapsed() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", e - s }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

kvmsharp_once() {
    local start end
    start=$(now)
    dotnet "$dll" run --kernel "$KVMSHARP_GUEST_KERNEL" --initrd "$KVMSHARP_GUEST_INITRD" --memory 512M --cpus 1 \
        --cmdline "$cmdline" --expect "$marker" --timeout 600 >"$work/k.out" 2>"$work/k.err" </dev/null ||
        { echo "kvmsharp did not reach the marker:" >&2; tail -20 "$work/k.err" >&2; exit 1; }
    end=$(now)
    elapsed "$start" "$end"
}

qemu_once() {
    local start end pid
    : >"$work/q.out"
    start=$(now)
    qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on -enable-kvm -cpu host -m 512 -smp 1 \
        -nodefaults -no-user-config -nographic -serial stdio -no-reboot \
        -kernel "$KVMSHARP_GUEST_KERNEL" -initrd "$KVMSHARP_GUEST_INITRD" -append "$cmdline" \
        >"$work/q.out" 2>&1 </dev/null &
    pid=$!
    until grep -q "$marker" "$work/q.out"; do
        kill -0 "$pid" 2>/dev/null || { echo "qemu ended before the marker:" >&2; tail -20 "$work/q.out" >&2; exit 1; }
        sleep 0.01
    done
    end=$(now)
    kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null || true
    elapsed "$start" "$end"
}

k_values=() q_values=()
for round in $(seq 1 "$rounds"); do
    if ((round % 2)); then k=$(kvmsharp_once); q=$(qemu_once); else q=$(qemu_once); k=$(kvmsharp_once); fi
    echo "round $round: kvmsharp ${k}s qemu ${q}s"
    k_values+=("$k"); q_values+=("$q")
done
k_median=$(median "${k_values[@]}")
q_median=$(median "${q_values[@]}")
echo "kvmsharp median ${k_median}s (process start to '$marker', .NET start-up included)"
echo "qemu     median ${q_median}s (qemu-system-x86_64 -M microvm -enable-kvm)"
awk -v k="$k_median" -v q="$q_median" 'BEGIN { printf "ratio=%.2f\n", k / q }'
