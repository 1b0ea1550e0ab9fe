#!/usr/bin/env bash
# Boot benchmark, run INSIDE the nested testbed (scripts/bench.sh boot does that): the same Debian
# kernel, initrd and command line boot to the same marker line under KvmSharp (the NativeAOT
# binary) and under QEMU (-kernel, microvm: the fastest machine type that boots it here),
# alternating who goes first, BENCH_BOOT_ROUNDS (default 5) rounds. Both are timed the same way:
# wall time from just before the VMM is started to the moment a blocking read of its console,
# through a FIFO, returns the marker line (no polling: on the testbed's one emulated CPU a poller
# slows the VMM it watches). Prints every round, both medians, KvmSharp's exit statistics (--stats)
# of its last round, its start -> first KVM_RUN and its peak RSS without guest RAM, and last
# ratio=X.XX (KvmSharp / QEMU).
#
#   KVMSHARP_GUEST_KERNEL=... KVMSHARP_GUEST_INITRD=... [KVMSHARP_AOT_BIN=...] boot-bench.sh
set -euo pipefail

: "${KVMSHARP_GUEST_KERNEL:?}" "${KVMSHARP_GUEST_INITRD:?}"
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
bin=${KVMSHARP_AOT_BIN:-$repo/artifacts/aot/kvmsharp}
[[ -x $bin ]] || { echo "boot-bench: no NativeAOT kvmsharp at $bin (scripts/bench.sh boot publishes it)" >&2; exit 2; }
rounds=${BENCH_BOOT_ROUNDS:-5}
[[ $rounds =~ ^[0-9]+$ ]] && ((rounds >= 1)) || { echo "boot-bench: BENCH_BOOT_ROUNDS must be a whole number >= 1" >&2; exit 2; }
marker=KVMSHARP-CPUS=1
cmdline="console=ttyS0 reboot=k panic=-1 quiet kvmsharp.cmd=poweroff"
work=$(mktemp -d)
vmm_pid=
cleanup() {
    if [[ -n $vmm_pid ]]; then kill "$vmm_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# Seconds between two $EPOCHREALTIME values (a bash builtin: reading it starts no process).
elapsed() { awk -v s="$1" -v e="$2" 'BEGIN { printf "%.3f", e - s }'; }

# start_vmm NAME CMD...: starts CMD in the background with its stdout on a FIFO, blocks reading lines
# until the marker, sets $seconds and $started; the rest of the output is drained in the background.
start_vmm() {
    local name=$1 line end found=0
    shift
    rm -f "$work/fifo"
    mkfifo "$work/fifo"
    started=$EPOCHREALTIME
    "$@" >"$work/fifo" 2>"$work/$name.err" </dev/null &
    vmm_pid=$!
    exec 3<"$work/fifo"
    while IFS= read -r line <&3; do
        if [[ $line == *"$marker"* ]]; then found=1; break; fi
    done
    end=$EPOCHREALTIME
    cat <&3 >/dev/null &
    exec 3<&-
    if ((!found)); then
        wait "$vmm_pid" 2>/dev/null || true
        vmm_pid=
        echo "boot-bench: $name ended before the marker:" >&2
        tail -n 20 "$work/$name.err" >&2
        exit 1
    fi
    seconds=$(elapsed "$started" "$end")
}

# Wait up to $1 seconds for the VMM to end by itself, then stop it.
end_vmm() {
    local limit=$(($1 * 10)) waited=0
    while kill -0 "$vmm_pid" 2>/dev/null && ((waited < limit)); do sleep 0.1; waited=$((waited + 1)); done
    kill "$vmm_pid" 2>/dev/null || true
    wait "$vmm_pid" 2>/dev/null || true
    vmm_pid=
}

k_values=() q_values=() first_run_ms=() first_run_cpu_ms=() vmm_mib=() pair_ratios=()
run_kvmsharp() {
    start_vmm kvmsharp "$bin" run --kernel "$KVMSHARP_GUEST_KERNEL" --initrd "$KVMSHARP_GUEST_INITRD" \
        --memory 512M --cpus 1 --cmdline "$cmdline" --stats
    k_values+=("$seconds")
    k=$seconds
    # Without --timeout/--expect KvmSharp does not watch its own console (QEMU does not either); a VMM
    # that never shows the marker is left to the testbed's TESTBED_TIMEOUT.
    # The guest powers off right after the marker; --stats prints when the VMM ends.
    end_vmm 120
    local first rss cpu
    first=$(sed -n 's/^first_kvm_run_unix_ns=//p' "$work/kvmsharp.err" | tail -n 1)
    if [[ -n $first ]]; then
        first_run_ms+=("$(awk -v f="$first" -v s="$started" 'BEGIN { printf "%.1f", f / 1e6 - s * 1e3 }')")
    fi
    cpu=$(sed -n 's/^process CPU time at the first KVM_RUN: \([0-9.]*\) ms.*/\1/p' "$work/kvmsharp.err" | tail -n 1)
    if [[ -n $cpu ]]; then first_run_cpu_ms+=("$cpu"); fi
    rss=$(sed -n 's/.*VMM without guest RAM \([0-9.]*\) MiB.*/\1/p' "$work/kvmsharp.err" | tail -n 1)
    if [[ -n $rss ]]; then vmm_mib+=("$rss"); fi
    cp "$work/kvmsharp.err" "$work/kvmsharp.last.err"
}

run_qemu() {
    start_vmm qemu qemu-system-x86_64 -M microvm,x-option-roms=off,rtc=on -enable-kvm -cpu host -m 512 -smp 1 \
        -nodefaults -no-user-config -nographic -serial stdio -no-reboot \
        -kernel "$KVMSHARP_GUEST_KERNEL" -initrd "$KVMSHARP_GUEST_INITRD" -append "$cmdline"
    q_values+=("$seconds")
    q=$seconds
    end_vmm 0
}

echo "boot-bench: $rounds rounds, kernel $(basename "$KVMSHARP_GUEST_KERNEL"), marker '$marker'"
echo "  kvmsharp: $bin (NativeAOT) run --memory 512M --cpus 1 --stats"
echo "  qemu:     qemu-system-x86_64 -M microvm -enable-kvm -cpu host -m 512 -smp 1"
echo "  timed: process start -> marker read from the console FIFO (blocking read, no polling)"
for round in $(seq 1 "$rounds"); do
    if ((round % 2)); then run_kvmsharp; run_qemu; else run_qemu; run_kvmsharp; fi
    echo "round $round: kvmsharp ${k}s qemu ${q}s"
    pair_ratios+=("$(awk -v k="$k" -v q="$q" 'BEGIN { printf "%.4f", k / q }')")
done

echo "--- kvmsharp --stats, last round ---"
grep -E '^(exit statistics|  |memory:|start-up|process CPU)' "$work/kvmsharp.last.err" || true
echo "---"
if ((${#first_run_ms[@]})); then
    echo "kvmsharp start -> first KVM_RUN: median $(median "${first_run_ms[@]}") ms (rounds: ${first_run_ms[*]}; measured from the bench's clock before the start)"
fi
if ((${#first_run_cpu_ms[@]})); then
    echo "kvmsharp process CPU time at the first KVM_RUN: median $(median "${first_run_cpu_ms[@]}") ms (rounds: ${first_run_cpu_ms[*]})"
fi
if ((${#vmm_mib[@]})); then
    echo "kvmsharp peak RSS without guest RAM: median $(median "${vmm_mib[@]}") MiB (rounds: ${vmm_mib[*]})"
fi
k_median=$(median "${k_values[@]}")
q_median=$(median "${q_values[@]}")
echo "kvmsharp median ${k_median}s (NativeAOT, process start to '$marker')"
echo "qemu     median ${q_median}s (qemu-system-x86_64 -M microvm -enable-kvm)"
# A diagnostic that pairs runs next to each other in time (the testbed's speed drifts with the host's load).
echo "median of per-round ratios: $(median "${pair_ratios[@]}" | awk '{ printf "%.2f", $1 }')"
awk -v k="$k_median" -v q="$q_median" 'BEGIN { printf "ratio=%.2f\n", k / q }'
