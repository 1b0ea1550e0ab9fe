#!/usr/bin/env bash
# KvmSharp benchmarks. Each prints per-round figures and, as its last line, a ratio against a
# reference doing the same work in the same run (see /work/shared/DESIGN.md, "Measuring").
#
#   scripts/bench.sh exit-roundtrip   ns per port-I/O exit at CPL0: KvmSharp vs a minimal C VMM
#                                     (gcc -O2 scripts/bench/exit_roundtrip.c), same guest binary;
#                                     prints the gfn-lookup lines first; last line: ratio=X.XX
#   scripts/bench.sh gfn-lookup       ns per MemslotSnapshot.TryFindByGfn at 1, 1000, 32000 slots
#   scripts/bench.sh tracked-write    ns per guest write to a write-tracked page, trapped, applied and
#                                     reported to TrackWrite, back into the guest: KvmSharp vs a minimal C
#                                     VMM with the same read-only memslot carve (gcc -O2
#                                     scripts/bench/tracked_write.c), same guest binary; then the
#                                     tracking-ops figures; last line: ratio=X.XX
#   scripts/bench.sh tracking-ops     AddGfn/RemoveGfn operations per second on a slot with vCPUs running
#   scripts/bench.sh tracked-write-oop  ns per guest write to a write-tracked page with the tracker in another
#                                     process, subscribed synchronously (the vCPU waits for its ack; the C client
#                                     tests/KvmSharp.Tests.Integration/Trackers/tracker_client.c, gcc -O2) vs the
#                                     same write with an in-process notifier, same guest, same process, alternating;
#                                     BENCH_OOP_SPIN_US (default 0) µs each side spins before blocking on its
#                                     eventfd; last line: ratio=X.XX (out-of-process / in-process, wall)
#   scripts/bench.sh boot             publishes the NativeAOT kvmsharp (artifacts/aot; needs clang), prints
#                                     its start -> first KVM_RUN and peak RSS without guest RAM for the
#                                     built-in guest on this host (BENCH_START_RUNS, default 5, runs), then
#                                     boots Linux to a marker under it and under QEMU microvm in the nested
#                                     testbed (scripts/bench/boot-bench.sh, BENCH_BOOT_ROUNDS, default 5,
#                                     rounds, alternating); last line: ratio=X.XX
#   scripts/bench.sh dirty            harvest time of a 4 GiB guest dirtying 1 % of its pages per round, per
#                                     dirty-log mode (bitmap, clear, ring): KvmSharp vs a minimal C VMM issuing
#                                     the same ioctls (gcc -O2 scripts/bench/dirty_harvest.c), same guest binary;
#                                     then the guest's write throughput while KvmSharp harvests back to back;
#                                     one line `ratio=X.XX mode=M` per mode
#   scripts/bench.sh blk              publishes the NativeAOT kvmsharp, then in the nested testbed
#                                     (scripts/bench/blk-bench.sh) attaches the same raw image (read-only,
#                                     cache=none) to KvmSharp and to QEMU (virtio-blk-pci), same kernel and
#                                     initrd, alternating, BENCH_BLK_ROUNDS (default 3) rounds; in the guest a
#                                     static C program (scripts/bench/blk_read.c) reads /dev/vda with O_DIRECT:
#                                     256 MiB sequential, then 4 KiB random reads for 5 s; last lines
#                                     ratio-seq=, ratio-rand= (KvmSharp / QEMU time for the same work) and
#                                     ratio= (the larger of the two)
#   scripts/bench.sh net              publishes the NativeAOT kvmsharp, then in the nested testbed
#                                     (scripts/bench/net-bench.sh) puts a tap in a namespace and boots KvmSharp
#                                     (--net tap=) and QEMU (-netdev tap,vhost=off -device virtio-net-pci) on it,
#                                     same kernel and initrd, alternating, BENCH_NET_ROUNDS (default 3) rounds;
#                                     the guest's net_xfer (scripts/bench/net_xfer.c) receives, then sends
#                                     BENCH_NET_MIB (default 32) MiB over TCP, timed in the guest; last lines
#                                     ratio-rx=, ratio-tx= (KvmSharp / QEMU time) and ratio= (the larger)
#
# Environment: BENCH_ROUNDS (default 5) rounds, each running C and KvmSharp once, alternating which
# goes first; BENCH_EXITS (default 20000) exits per run; BENCH_UNROLL (default 1) `out`s (tracked-write:
# dword writes) per guest loop iteration; BENCH_WARMUPS (default 2) untimed KvmSharp VMs per run before
# the timed one (JIT); BENCH_RAW=1 also runs, each round, the same loop written on KvmSharp.Kvm alone
# (diagnostic). tracked-write: BENCH_WRITES (default 20000) tracked writes per run; BENCH_UNCHANGED=1
# makes every write store the bytes memory already holds (diagnostic: KvmSharp then runs its cmpxchg
# inspector on each write, the C reference has no such work). tracking-ops (also
# run by tracked-write): BENCH_TRACKING_RUNS (default 3) runs, each a fresh VM with BENCH_TRACKING_CPUS
# (default 2) spinning vCPUs doing BENCH_TRACKING_OPS (default 2000) operations, at most
# BENCH_TRACKING_SECONDS (default 10) s of them.
# Needs root (/dev/kvm), gcc and the .NET 10 SDK. Works from any directory.
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/.."
REPO=$PWD
BENCH_PROJECT=tests/KvmSharp.Benchmarks/KvmSharp.Benchmarks.csproj
BENCH_BIN=$REPO/tests/KvmSharp.Benchmarks/bin/Release/net10.0/kvmsharp-bench

usage() {
    cat >&2 <<'USAGE'
usage: scripts/bench.sh COMMAND
commands:
  exit-roundtrip   ns per port-I/O exit, KvmSharp vs minimal C; last line ratio=X.XX (KvmSharp / C)
  gfn-lookup       ns per gfn-to-slot lookup at 1, 1000 and 32000 memslots
  tracked-write    ns per tracked guest write (trap, apply, TrackWrite, resume), KvmSharp vs minimal C,
                   then tracking-ops; last line ratio=X.XX (KvmSharp / C)
  tracking-ops     AddGfn/RemoveGfn operations per second with vCPUs running
  tracked-write-oop  ns per tracked guest write with a synchronous out-of-process tracker vs in-process;
                   last line ratio=X.XX (out-of-process / in-process)
  tracking-scale   single and batch AddGfn/RemoveGfn at 1k/10k/100k scattered tracked gfns with a vCPU running,
                   kernel slots used; last line ratio=X.XX (single-op time at 10k / at 1k)
  boot             Linux boot to a marker, KvmSharp (NativeAOT) vs QEMU, in the nested testbed; also start ->
                   first KVM_RUN and RSS on this host; last line ratio=X.XX (KvmSharp / QEMU)
  dirty            dirty-log harvest time per mode (bitmap, clear, ring), KvmSharp vs minimal C, and the
                   guest's write throughput while harvesting; one `ratio=X.XX mode=M` line per mode
  blk              virtio-blk O_DIRECT reads in the guest (256 MiB sequential, 4 KiB random), KvmSharp
                   (NativeAOT) vs QEMU, in the nested testbed; ratio-seq=, ratio-rand=, last ratio= (the larger)
  net              virtio-net TCP throughput host→guest and guest→host over a tap, KvmSharp (NativeAOT) vs QEMU
                   (vhost=off), in the nested testbed; ratio-rx=, ratio-tx=, last ratio= (the larger)
environment: BENCH_ROUNDS=5 BENCH_EXITS=20000 BENCH_UNROLL=1 BENCH_WARMUPS=2 BENCH_RAW=
             BENCH_WRITES=20000 BENCH_UNCHANGED= BENCH_TRACKING_RUNS=3 BENCH_TRACKING_OPS=2000 BENCH_TRACKING_SECONDS=10
             BENCH_TRACKING_CPUS=2 BENCH_BOOT_ROUNDS=5 BENCH_START_RUNS=5
             dirty: BENCH_ROUNDS=5 BENCH_DIRTY_HARVESTS=20 BENCH_DIRTY_SECONDS=3 BENCH_DIRTY_MODES="bitmap clear ring"
             blk: BENCH_BLK_ROUNDS=3 BENCH_BLK_SEQ_MIB=256 BENCH_BLK_BLOCK_KIB=1024 BENCH_BLK_RAND_SECONDS=5
                  BENCH_BLK_IMAGE_MIB=320 BENCH_BLK_CACHE=none (or writeback) BENCH_BLK_AA= (1: QEMU on both sides)
             net: BENCH_NET_ROUNDS=3 BENCH_NET_MIB=32 BENCH_NET_TIMEOUT=900
USAGE
}

die() { echo "bench.sh: $*" >&2; exit 1; }

is_count() { [[ $1 =~ ^[0-9]+$ ]] && (( $1 >= $2 )); }

build_bench() {
    echo "building kvmsharp-bench (Release)..." >&2
    dotnet build -c Release "$BENCH_PROJECT" -nologo -v q >&2 || die "dotnet build failed"
    [[ -x $BENCH_BIN ]] || die "build produced no $BENCH_BIN"
}

require_kvm() {
    # Open it for real: the node exists on hosts where only root may use it.
    if ! { exec 9<>/dev/kvm; } 2>/dev/null; then
        die "cannot open /dev/kvm read-write (does it exist? run as root, or join the kvm group)"
    fi
    exec 9>&-
}

# Median of the numbers given as arguments (mean of the middle two for an even count).
median() {
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.6g", m }'
}

# The value of KEY=... in the output text $2.
field() { sed -n "s/^$1=//p" <<<"$2" | tail -n 1; }

AOT_DIR=$REPO/artifacts/aot

# The shipped form: NativeAOT. The ILCompiler links with clang.
publish_aot() {
    command -v clang >/dev/null || die "NativeAOT needs clang: apt-get install clang"
    echo "publishing the NativeAOT kvmsharp to $AOT_DIR..." >&2
    dotnet publish src/KvmSharp -c Release -r linux-x64 -p:PublishAot=true -o "$AOT_DIR" -nologo -v q >&2 ||
        die "dotnet publish (NativeAOT) failed"
    [[ -x $AOT_DIR/kvmsharp ]] || die "the publish produced no $AOT_DIR/kvmsharp"
}

# Start -> first KVM_RUN and peak RSS without guest RAM of the AOT binary running the built-in guest here.
# The start is read from bash's clock ($EPOCHREALTIME, no process started) just before exec.
start_figures() {
    local runs=${BENCH_START_RUNS:-5} run out start first rss cpu first_ms=() cpu_ms=() rss_mib=()
    is_count "$runs" 1 || die "BENCH_START_RUNS must be a whole number >= 1, not '$runs'"
    for (( run = 1; run <= runs; run++ )); do
        out=$(bash -c 'echo "start=$EPOCHREALTIME"; exec "$@" run --stats 2>&1' _ "$AOT_DIR/kvmsharp") ||
            die "the built-in guest failed under $AOT_DIR/kvmsharp: $out"
        start=$(field start "$out")
        first=$(field first_kvm_run_unix_ns "$out")
        rss=$(sed -n 's/.*VMM without guest RAM \([0-9.]*\) MiB.*/\1/p' <<<"$out")
        cpu=$(sed -n 's/^process CPU time at the first KVM_RUN: \([0-9.]*\) ms.*/\1/p' <<<"$out")
        [[ -n $start && -n $first && -n $rss && -n $cpu ]] || die "kvmsharp run --stats printed no figures: $out"
        first_ms+=("$(awk -v f="$first" -v s="$start" 'BEGIN { printf "%.1f", f / 1e6 - s * 1e3 }')")
        rss_mib+=("$rss")
        cpu_ms+=("$cpu")
    done
    echo "host, built-in guest, NativeAOT: start -> first KVM_RUN median $(median "${first_ms[@]}") ms (runs: ${first_ms[*]}), process CPU time by then median $(median "${cpu_ms[@]}") ms (runs: ${cpu_ms[*]}); peak RSS without guest RAM median $(median "${rss_mib[@]}") MiB (runs: ${rss_mib[*]})"
}

gfn_lookup() {
    "$BENCH_BIN" gfn-lookup
}

exit_roundtrip() {
    local rounds=${BENCH_ROUNDS:-5} exits=${BENCH_EXITS:-20000} unroll=${BENCH_UNROLL:-1} warmups=${BENCH_WARMUPS:-2}
    is_count "$rounds" 1 || die "BENCH_ROUNDS must be a whole number >= 1, not '$rounds'"
    is_count "$exits" 1 || die "BENCH_EXITS must be a whole number >= 1, not '$exits'"
    is_count "$unroll" 1 || die "BENCH_UNROLL must be a whole number >= 1, not '$unroll'"
    is_count "$warmups" 0 || die "BENCH_WARMUPS must be a whole number >= 0, not '$warmups'"
    command -v gcc >/dev/null || die "gcc is required to build the C reference"

    local tmp
    tmp=$(mktemp -d -t kvmsharp-bench.XXXXXX)
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    gcc -O2 -Wall -Wextra -o "$tmp/exit_roundtrip" scripts/bench/exit_roundtrip.c || die "gcc failed"
    "$BENCH_BIN" write-guest exit-roundtrip "$exits" "$tmp/guest.bin" "$unroll"

    gfn_lookup

    echo "exit-roundtrip: $rounds rounds of $exits port-I/O exits at CPL0 (16-bit real mode), unroll $unroll"
    echo "  timed: first port-0x80 exit handled -> debug-exit exit handled (wall; cpu = vCPU thread CPU time)"
    echo "  KvmSharp: full stack (VirtualMachine, VcpuRunner, ExitDispatcher, port bus, no-op device on 0x80),"
    echo "  after $warmups untimed warm-up VM(s) in the same process (tiered JIT); C: scripts/bench/exit_roundtrip.c"
    local c_values=() k_values=() c_cpu=() k_cpu=() r_values=() pair_ratios=() round c_out k_out r_out c_ns k_ns r_ns raw_note
    run_c() { c_out=$("$tmp/exit_roundtrip" "$tmp/guest.bin") || die "C reference failed"; }
    run_k() { k_out=$("$BENCH_BIN" exit-roundtrip "$tmp/guest.bin" "$warmups") || die "kvmsharp-bench exit-roundtrip failed"; }
    run_r() { r_out=$("$BENCH_BIN" exit-roundtrip-raw "$tmp/guest.bin") || die "kvmsharp-bench exit-roundtrip-raw failed"; }
    for (( round = 1; round <= rounds; round++ )); do
        # Alternate who goes first so a slow drift of the host's load favours neither side.
        if (( round % 2 )); then run_c; run_k; else run_k; run_c; fi
        c_ns=$(field ns_per_exit "$c_out")
        k_ns=$(field ns_per_exit "$k_out")
        [[ -n $c_ns && -n $k_ns ]] || die "a run printed no ns_per_exit"
        [[ $(field exits_0x80 "$c_out") == "$exits" && $(field exits_0x80 "$k_out") == "$exits" ]] ||
            die "exit counts differ from $exits (C: $(field exits_0x80 "$c_out"), KvmSharp: $(field exits_0x80 "$k_out"))"
        c_values+=("$c_ns")
        k_values+=("$k_ns")
        c_cpu+=("$(field cpu_ns_per_exit "$c_out")")
        k_cpu+=("$(field cpu_ns_per_exit "$k_out")")
        pair_ratios+=("$(awk -v k="$k_ns" -v c="$c_ns" 'BEGIN { printf "%.4f", k / c }')")
        raw_note=
        if [[ -n ${BENCH_RAW:-} ]]; then
            run_r
            r_ns=$(field ns_per_exit "$r_out")
            r_values+=("$r_ns")
            raw_note="  kvm-layer-only=$r_ns"
        fi
        printf 'round %d: c=%s ns/exit (cpu %s)  kvmsharp=%s ns/exit (cpu %s, cold %s)%s\n' "$round" \
            "$c_ns" "$(field cpu_ns_per_exit "$c_out")" "$k_ns" "$(field cpu_ns_per_exit "$k_out")" \
            "$(field cold_ns_per_exit "$k_out")" "$raw_note"
    done

    local c_median k_median
    c_median=$(median "${c_values[@]}")
    k_median=$(median "${k_values[@]}")
    if (( ${#r_values[@]} )); then echo "median kvm-layer-only (KvmSharp.Kvm loop in .NET, no Vmm): $(median "${r_values[@]}") ns/exit"; fi
    local c_cpu_median k_cpu_median
    c_cpu_median=$(median "${c_cpu[@]}")
    k_cpu_median=$(median "${k_cpu[@]}")
    # Diagnostics: the vCPU thread's CPU time leaves out preemption by other work on the host (a wall
    # figure far above its cpu figure means that run was preempted); the per-round ratios pair runs
    # that sat next to each other in time.
    echo "median cpu: c=$c_cpu_median ns/exit  kvmsharp=$k_cpu_median ns/exit  cpu ratio $(awk -v k="$k_cpu_median" -v c="$c_cpu_median" 'BEGIN { printf "%.2f", k / c }')"
    echo "median of per-round ratios: $(median "${pair_ratios[@]}" | awk '{ printf "%.2f", $1 }')"
    # The figure the target applies to: wall time, which would also show any wait the vCPU thread made.
    echo "median: c=$c_median ns/exit  kvmsharp=$k_median ns/exit"
    awk -v k="$k_median" -v c="$c_median" 'BEGIN { printf "ratio=%.2f\n", k / c }'
}

tracked_write() {
    local rounds=${BENCH_ROUNDS:-5} writes=${BENCH_WRITES:-20000} unroll=${BENCH_UNROLL:-1} warmups=${BENCH_WARMUPS:-2}
    is_count "$rounds" 1 || die "BENCH_ROUNDS must be a whole number >= 1, not '$rounds'"
    is_count "$writes" 1 || die "BENCH_WRITES must be a whole number >= 1, not '$writes'"
    is_count "$unroll" 1 || die "BENCH_UNROLL must be a whole number >= 1, not '$unroll'"
    (( unroll <= 256 && unroll <= writes )) || die "BENCH_UNROLL must be at most 256 and at most BENCH_WRITES, not '$unroll'"
    is_count "$warmups" 0 || die "BENCH_WARMUPS must be a whole number >= 0, not '$warmups'"
    tracking_ops_settings
    command -v gcc >/dev/null || die "gcc is required to build the C reference"

    local tmp
    tmp=$(mktemp -d -t kvmsharp-bench.XXXXXX)
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    gcc -O2 -Wall -Wextra -o "$tmp/tracked_write" scripts/bench/tracked_write.c || die "gcc failed"
    local kind=changing
    if [[ -n ${BENCH_UNCHANGED:-} ]]; then
        kind=unchanged
        "$BENCH_BIN" write-guest tracked-write "$writes" "$tmp/guest.bin" "$unroll" unchanged
    else
        "$BENCH_BIN" write-guest tracked-write "$writes" "$tmp/guest.bin" "$unroll"
    fi

    echo "tracked-write: $rounds rounds of $writes dword writes ($kind bytes) to a write-tracked page (gpa 0x8000) at CPL0 (16-bit real mode), unroll $unroll"
    echo "  timed: first trapped write handled -> debug-exit exit handled (wall; cpu = vCPU thread CPU time)"
    echo "  KvmSharp: full stack (VirtualMachine, VcpuRunner, ExitDispatcher, TrackedAccessInterceptor, PageTracker,"
    echo "  a notifier that counts), after $warmups untimed warm-up VM(s) in the same process (tiered JIT);"
    echo "  C: scripts/bench/tracked_write.c (same read-only memslot carve; memcpy into RAM + a noinline notify)"
    local c_values=() k_values=() c_cpu=() k_cpu=() pair_ratios=() round c_out k_out c_ns k_ns
    run_c() { c_out=$("$tmp/tracked_write" "$tmp/guest.bin") || die "C reference failed"; }
    run_k() { k_out=$("$BENCH_BIN" tracked-write "$tmp/guest.bin" "$warmups") || die "kvmsharp-bench tracked-write failed"; }
    for (( round = 1; round <= rounds; round++ )); do
        # Alternate who goes first so a slow drift of the host's load favours neither side.
        if (( round % 2 )); then run_c; run_k; else run_k; run_c; fi
        c_ns=$(field ns_per_write "$c_out")
        k_ns=$(field ns_per_write "$k_out")
        [[ -n $c_ns && -n $k_ns ]] || die "a run printed no ns_per_write"
        [[ $(field tracked_writes "$c_out") == "$writes" && $(field tracked_writes "$k_out") == "$writes" ]] ||
            die "tracked write counts differ from $writes (C: $(field tracked_writes "$c_out"), KvmSharp: $(field tracked_writes "$k_out"))"
        c_values+=("$c_ns")
        k_values+=("$k_ns")
        c_cpu+=("$(field cpu_ns_per_write "$c_out")")
        k_cpu+=("$(field cpu_ns_per_write "$k_out")")
        pair_ratios+=("$(awk -v k="$k_ns" -v c="$c_ns" 'BEGIN { printf "%.4f", k / c }')")
        printf 'round %d: c=%s ns/write (cpu %s)  kvmsharp=%s ns/write (cpu %s, cold %s)\n' "$round" \
            "$c_ns" "$(field cpu_ns_per_write "$c_out")" "$k_ns" "$(field cpu_ns_per_write "$k_out")" \
            "$(field cold_ns_per_write "$k_out")"
    done

    local c_median k_median c_cpu_median k_cpu_median
    c_median=$(median "${c_values[@]}")
    k_median=$(median "${k_values[@]}")
    c_cpu_median=$(median "${c_cpu[@]}")
    k_cpu_median=$(median "${k_cpu[@]}")
    # Diagnostics, as for exit-roundtrip: CPU time leaves out preemption; per-round ratios pair neighbours.
    echo "median cpu: c=$c_cpu_median ns/write  kvmsharp=$k_cpu_median ns/write  cpu ratio $(awk -v k="$k_cpu_median" -v c="$c_cpu_median" 'BEGIN { printf "%.2f", k / c }')"
    echo "median of per-round ratios: $(median "${pair_ratios[@]}" | awk '{ printf "%.2f", $1 }')"
    echo "median: c=$c_median ns/write  kvmsharp=$k_median ns/write"

    tracking_ops

    # The figure the target applies to: wall time, which would also show any wait the vCPU thread made.
    awk -v k="$k_median" -v c="$c_median" 'BEGIN { printf "ratio=%.2f\n", k / c }'
}

tracked_write_oop() {
    local rounds=${BENCH_ROUNDS:-5} writes=${BENCH_WRITES:-20000} warmups=${BENCH_WARMUPS:-2} spin=${BENCH_OOP_SPIN_US:-0}
    is_count "$rounds" 1 || die "BENCH_ROUNDS must be a whole number >= 1, not '$rounds'"
    is_count "$writes" 1 || die "BENCH_WRITES must be a whole number >= 1, not '$writes'"
    is_count "$warmups" 0 || die "BENCH_WARMUPS must be a whole number >= 0, not '$warmups'"
    is_count "$spin" 0 || die "BENCH_OOP_SPIN_US must be a whole number >= 0, not '$spin'"
    command -v gcc >/dev/null || die "gcc is required to build the C tracker client"

    local tmp
    tmp=$(mktemp -d -t kvmsharp-bench.XXXXXX)
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    gcc -O2 -Wall -Wextra -o "$tmp/tracker_client" tests/KvmSharp.Tests.Integration/Trackers/tracker_client.c || die "gcc failed"
    "$BENCH_BIN" write-guest tracked-write "$writes" "$tmp/guest.bin" 1

    echo "tracked-write-oop: $rounds rounds of $writes dword writes to a write-tracked page (gpa 0x8000) at CPL0 (16-bit real mode)"
    echo "  timed: first trapped write handled -> debug-exit exit handled (wall; cpu = vCPU thread CPU time)"
    echo "  in-process: VirtualMachine (memfd RAM) + a notifier that counts; out-of-process: the same + the C tracker"
    echo "  client subscribed synchronously (each write waits for its ack); spin before blocking: $spin us each side;"
    echo "  $warmups untimed warm-up pair(s) per round in the same process"
    local in_values=() oop_values=() in_cpu=() oop_cpu=() pair_ratios=() round out order in_ns oop_ns
    for (( round = 1; round <= rounds; round++ )); do
        # Alternate which goes first so a slow drift of the host's load favours neither side.
        order=; (( round % 2 )) || order=oop-first
        # shellcheck disable=SC2086 # $order is empty or one word
        out=$(BENCH_OOP_SPIN_US=$spin "$BENCH_BIN" tracked-write-oop "$tmp/guest.bin" "$warmups" "$tmp/tracker_client" $order) ||
            die "kvmsharp-bench tracked-write-oop failed: $out"
        in_ns=$(field inproc_ns_per_write "$out")
        oop_ns=$(field oop_ns_per_write "$out")
        [[ -n $in_ns && -n $oop_ns ]] || die "a run printed no figures: $out"
        [[ $(field tracked_writes "$out") == "$writes" && $(field oop_tracked_writes "$out") == "$writes" ]] ||
            die "tracked write counts differ from $writes: $out"
        in_values+=("$in_ns")
        oop_values+=("$oop_ns")
        in_cpu+=("$(field inproc_cpu_ns_per_write "$out")")
        oop_cpu+=("$(field oop_cpu_ns_per_write "$out")")
        pair_ratios+=("$(awk -v o="$oop_ns" -v i="$in_ns" 'BEGIN { printf "%.4f", o / i }')")
        printf 'round %d: in-process=%s ns/write (cpu %s)  out-of-process=%s ns/write (cpu %s)\n' "$round" \
            "$in_ns" "$(field inproc_cpu_ns_per_write "$out")" "$oop_ns" "$(field oop_cpu_ns_per_write "$out")"
    done
    local in_median oop_median in_cpu_median oop_cpu_median
    in_median=$(median "${in_values[@]}")
    oop_median=$(median "${oop_values[@]}")
    in_cpu_median=$(median "${in_cpu[@]}")
    oop_cpu_median=$(median "${oop_cpu[@]}")
    echo "host load average: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs"
    echo "median cpu: in-process=$in_cpu_median ns/write  out-of-process=$oop_cpu_median ns/write  cpu ratio $(awk -v o="$oop_cpu_median" -v i="$in_cpu_median" 'BEGIN { printf "%.2f", o / i }')"
    echo "median of per-round ratios: $(median "${pair_ratios[@]}" | awk '{ printf "%.2f", $1 }')"
    echo "median: in-process=$in_median ns/write  out-of-process=$oop_median ns/write"
    awk -v o="$oop_median" -v i="$in_median" 'BEGIN { printf "ratio=%.2f\n", o / i }'
}

tracking_ops_settings() {
    tracking_runs=${BENCH_TRACKING_RUNS:-3} tracking_count=${BENCH_TRACKING_OPS:-2000}
    tracking_seconds=${BENCH_TRACKING_SECONDS:-10} tracking_cpus=${BENCH_TRACKING_CPUS:-2}
    is_count "$tracking_runs" 1 || die "BENCH_TRACKING_RUNS must be a whole number >= 1, not '$tracking_runs'"
    is_count "$tracking_count" 2 || die "BENCH_TRACKING_OPS must be a whole number >= 2, not '$tracking_count'"
    is_count "$tracking_seconds" 1 || die "BENCH_TRACKING_SECONDS must be a whole number >= 1, not '$tracking_seconds'"
    is_count "$tracking_cpus" 1 || die "BENCH_TRACKING_CPUS must be a whole number >= 1, not '$tracking_cpus'"
}

# AddGfn/RemoveGfn per second while vCPUs spin writing the region the gfns are drawn from.
tracking_ops() {
    local tracking_runs tracking_count tracking_seconds tracking_cpus
    tracking_ops_settings
    echo "tracking-ops: $tracking_runs runs of up to $tracking_count alternating AddGfn/RemoveGfn (add g, remove g) on random gfns"
    echo "  of a 64-page region of slot 0, at most ${tracking_seconds} s each, while $tracking_cpus vCPU(s) spin writing that region"
    echo "  (each operation re-carves the slot: pause all vCPUs, 4 KVM_SET_USER_MEMORY_REGION (1 delete + 3 creates, or back), resume)"
    local run out ops_values=() pair_values=()
    for (( run = 1; run <= tracking_runs; run++ )); do
        out=$("$BENCH_BIN" tracking-ops "$tracking_count" "$tracking_seconds" "$tracking_cpus") || die "kvmsharp-bench tracking-ops failed"
        ops_values+=("$(field tracking_ops_per_s "$out")")
        pair_values+=("$(field tracking_pairs_per_s "$out")")
        printf 'tracking run %d: %s ops in %s s: %s ops/s (%s add+remove pairs/s); add median %s us (p99 %s), remove median %s us (p99 %s); host cpu %s us/op; guest passes %s, tracked writes %s\n' \
            "$run" "$(field tracking_ops "$out")" "$(field wall_s "$out")" "$(field tracking_ops_per_s "$out")" \
            "$(field tracking_pairs_per_s "$out")" "$(field add_us_median "$out")" "$(field add_us_p99 "$out")" \
            "$(field remove_us_median "$out")" "$(field remove_us_p99 "$out")" "$(field host_cpu_us_per_op "$out")" \
            "$(field guest_passes_during "$out")" "$(field tracked_writes_during "$out")"
    done
    echo "tracking_ops_per_s=$(median "${ops_values[@]}" | awk '{ printf "%.0f", $1 }') tracking_pairs_per_s=$(median "${pair_values[@]}" | awk '{ printf "%.0f", $1 }') (median of $tracking_runs runs, $tracking_cpus vCPUs running)"
}

# Dirty logging (issue 13): per mode, harvest time of both RAM slots of a 4 GiB guest that dirtied 1 % of its
# pages, measured at each round's MMIO signal while the guest waits, KvmSharp (DirtyPageLog.Harvest, carve and
# all) against dirty_harvest.c in the same run; then the guest's write rate while KvmSharp harvests non-stop.
dirty_bench() {
    local rounds=${BENCH_ROUNDS:-5} harvests=${BENCH_DIRTY_HARVESTS:-20} seconds=${BENCH_DIRTY_SECONDS:-3}
    local modes=${BENCH_DIRTY_MODES:-bitmap clear ring}
    is_count "$rounds" 1 || die "BENCH_ROUNDS must be a whole number >= 1, not '$rounds'"
    is_count "$harvests" 1 || die "BENCH_DIRTY_HARVESTS must be a whole number >= 1, not '$harvests'"
    is_count "$seconds" 1 || die "BENCH_DIRTY_SECONDS must be a whole number >= 1, not '$seconds'"
    local mode
    for mode in $modes; do
        [[ $mode == bitmap || $mode == clear || $mode == ring ]] || die "BENCH_DIRTY_MODES: '$mode' is not bitmap, clear or ring"
    done
    command -v gcc >/dev/null || die "gcc is required to build the C reference"

    local tmp
    tmp=$(mktemp -d -t kvmsharp-bench.XXXXXX)
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    gcc -O2 -Wall -Wextra -o "$tmp/dirty_harvest" scripts/bench/dirty_harvest.c || die "gcc failed"
    "$BENCH_BIN" write-guest dirty "$tmp/guest.bin"

    echo "dirty: 4 GiB guest (3 GiB + 1 GiB slots, both logging) at CPL3 writing 10480 pages (1 %) per round;"
    echo "  timed: one harvest of both slots at each round's MMIO signal, the guest waiting ($harvests per run, median;"
    echo "  round 0 not counted; every harvest must report exactly the 10481 pages written); $rounds runs per side,"
    echo "  alternating who goes first. KvmSharp: DirtyPageLog.Harvest on the vCPU thread; C: scripts/bench/dirty_harvest.c"
    echo "  host load average at start: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) CPUs (figures swing with it; compare within a run)"
    echo "  Each harvest is timed twice: wall time, and the harvesting thread's CPU time (the ioctls' kernel work runs"
    echo "  on that thread; CPU time leaves out the time it sat preempted, so it is what the ratio uses on a loaded host)."
    local summary=() c_out k_out t_out run c_cpu_median k_cpu_median c_median k_median
    local c_values k_values c_mins k_mins c_cpu k_cpu
    us() { awk -v v="$1" 'BEGIN { printf "%.0f", v / 1000 }'; }
    for mode in $modes; do
        c_values=() k_values=() c_mins=() k_mins=() c_cpu=() k_cpu=()
        for (( run = 1; run <= rounds; run++ )); do
            run_dirty_c() { c_out=$("$tmp/dirty_harvest" "$mode" "$tmp/guest.bin" "$harvests") || die "C reference failed ($mode)"; }
            run_dirty_k() { k_out=$("$BENCH_BIN" dirty "$mode" "$tmp/guest.bin" "$harvests") || die "kvmsharp-bench dirty $mode failed"; }
            if (( run % 2 )); then run_dirty_c; run_dirty_k; else run_dirty_k; run_dirty_c; fi
            [[ -n $(field harvest_ns "$c_out") && -n $(field harvest_ns "$k_out") ]] || die "a $mode run printed no harvest_ns"
            [[ -n $(field harvest_cpu_ns "$c_out") && -n $(field harvest_cpu_ns "$k_out") ]] || die "a $mode run printed no harvest_cpu_ns"
            c_values+=("$(field harvest_ns "$c_out")")
            k_values+=("$(field harvest_ns "$k_out")")
            c_mins+=("$(field harvest_ns_min "$c_out")")
            k_mins+=("$(field harvest_ns_min "$k_out")")
            c_cpu+=("$(field harvest_cpu_ns "$c_out")")
            k_cpu+=("$(field harvest_cpu_ns "$k_out")")
            printf '%s run %d: cpu c=%s us kvmsharp=%s us | wall c=%s us (min %s) kvmsharp=%s us (min %s)\n' "$mode" "$run" \
                "$(us "$(field harvest_cpu_ns "$c_out")")" "$(us "$(field harvest_cpu_ns "$k_out")")" \
                "$(us "$(field harvest_ns "$c_out")")" "$(us "$(field harvest_ns_min "$c_out")")" \
                "$(us "$(field harvest_ns "$k_out")")" "$(us "$(field harvest_ns_min "$k_out")")"
        done
        c_median=$(median "${c_values[@]}")
        k_median=$(median "${k_values[@]}")
        c_cpu_median=$(median "${c_cpu[@]}")
        k_cpu_median=$(median "${k_cpu[@]}")
        t_out=$("$BENCH_BIN" dirty-throughput "$mode" "$seconds") || die "kvmsharp-bench dirty-throughput $mode failed"
        echo "$mode: median harvest cpu c=$(us "$c_cpu_median") us kvmsharp=$(us "$k_cpu_median") us; wall c=$(us "$c_median") us kvmsharp=$(us "$k_median") us;" \
            "guest writes while KvmSharp harvests non-stop: $(field write_pages_per_s "$t_out") pages/s" \
            "($(field harvests "$t_out") harvests in ${seconds} s, $(field harvest_us "$t_out") us each, ring-full exits $(field ring_full_exits "$t_out"))"
        # Diagnostic: the fastest harvest of each run is the least disturbed by other load on the host.
        echo "$mode: median of per-run fastest wall harvests c=$(us "$(median "${c_mins[@]}")") us kvmsharp=$(us "$(median "${k_mins[@]}")") us, ratio $(awk -v k="$(median "${k_mins[@]}")" -v c="$(median "${c_mins[@]}")" 'BEGIN { printf "%.2f", k / c }')"
        summary+=("$(awk -v k="$k_cpu_median" -v c="$c_cpu_median" -v kw="$k_median" -v cw="$c_median" -v m="$mode" 'BEGIN { printf "ratio=%.2f mode=%s (thread CPU time; wall-time ratio %.2f)", k / c, m, kw / cw }')")
    done
    printf '%s\n' "${summary[@]}"
}

# virtio-blk (issue 8): builds the guest side on the host (blk_read.c, static; an initrd layer with it
# and /bench/run.sh appended to fetch-guest.sh's initrd; a raw image of random bytes in a directory
# the testbed shares writable over 9p, the one file system there that takes O_DIRECT), then runs
# scripts/bench/blk-bench.sh in the testbed.
blk_bench() {
    local mib=${BENCH_BLK_IMAGE_MIB:-320} seq_mib=${BENCH_BLK_SEQ_MIB:-256}
    is_count "$mib" 1 || die "BENCH_BLK_IMAGE_MIB must be a whole number >= 1, not '$mib'"
    is_count "$seq_mib" 1 || die "BENCH_BLK_SEQ_MIB must be a whole number >= 1, not '$seq_mib'"
    (( seq_mib <= mib )) || die "BENCH_BLK_SEQ_MIB ($seq_mib) must fit the image (BENCH_BLK_IMAGE_MIB=$mib)"
    command -v gcc >/dev/null || die "gcc is required to build the guest's reader"
    local tmp busybox
    tmp=$(mktemp -d -t kvmsharp-bench.XXXXXX)
    # shellcheck disable=SC2064 # expand $tmp now
    trap "rm -rf '$tmp'" EXIT
    mkdir -p "$tmp/layer/bench"
    gcc -O2 -Wall -Wextra -static -o "$tmp/layer/bench/blk_read" scripts/bench/blk_read.c || die "gcc -static failed (libc6-dev?)"
    cat >"$tmp/layer/bench/run.sh" <<'RUN_EOF'
#!/bin/sh
# scripts/bench.sh blk, guest side (kvmsharp.run=/bench/run.sh): O_DIRECT reads of /dev/vda.
seq=256 block=1024 rand=5 seed=1
for arg in $(cat /proc/cmdline); do
    case $arg in
        blkbench.seq=*) seq=${arg#*=} ;;
        blkbench.block=*) block=${arg#*=} ;;
        blkbench.rand=*) rand=${arg#*=} ;;
        blkbench.seed=*) seed=${arg#*=} ;;
    esac
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
echo BLKBENCH-BEGIN
/bench/blk_read /dev/vda seq "$seq" "$block" && /bench/blk_read /dev/vda rand "$rand" "$seed" && echo BLKBENCH-END
RUN_EOF
    chmod 755 "$tmp/layer/bench/run.sh"
    # shellcheck source=scripts/guest/debcache.sh
    busybox=$(KC_PROG=bench.sh; . scripts/guest/debcache.sh; kc_busybox_binary) || die "cannot get busybox for cpio"
    (KC_PROG=bench.sh; . scripts/guest/debcache.sh; kc_pack_initramfs "$tmp/layer" "$tmp/layer.cpio.gz" "$busybox") ||
        die "packing the benchmark's initrd layer failed"
    eval "$(scripts/guest/fetch-guest.sh)"
    # The kernel unpacks concatenated cpio archives in turn: the base initramfs, then the layer.
    cat "$INITRD" "$tmp/layer.cpio.gz" >"$tmp/initrd-blk.img"
    mkdir -p "$tmp/share"
    head -c "${mib}M" /dev/urandom >"$tmp/share/blk.img" || die "cannot write the $mib MiB image"
    export KVMSHARP_GUEST_KERNEL=$KERNEL KVMSHARP_AOT_BIN=$AOT_DIR/kvmsharp
    export BENCH_BLK_INITRD=$tmp/initrd-blk.img BENCH_BLK_IMAGE=$tmp/share/blk.img
    TESTBED_RW="$tmp/share${TESTBED_RW:+:$TESTBED_RW}" \
        TESTBED_ENV="BENCH_BLK_INITRD BENCH_BLK_IMAGE BENCH_BLK_ROUNDS BENCH_BLK_SEQ_MIB BENCH_BLK_BLOCK_KIB BENCH_BLK_RAND_SECONDS BENCH_BLK_CACHE BENCH_BLK_TIMEOUT BENCH_BLK_AA ${TESTBED_ENV:-}" \
        scripts/testbed/run-in-testbed.sh scripts/bench/blk-bench.sh
}

case ${1:-} in
    exit-roundtrip)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        require_kvm
        build_bench
        exit_roundtrip
        ;;
    boot)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        publish_aot
        if { exec 9<>/dev/kvm; } 2>/dev/null; then
            exec 9>&-
            start_figures
        else
            echo "no usable /dev/kvm here: start -> first KVM_RUN on this host not measured" >&2
        fi
        eval "$(scripts/guest/fetch-guest.sh)"
        export KVMSHARP_GUEST_KERNEL=$KERNEL KVMSHARP_GUEST_INITRD=$INITRD KVMSHARP_AOT_BIN=$AOT_DIR/kvmsharp
        TESTBED_ENV="BENCH_BOOT_ROUNDS ${TESTBED_ENV:-}" BENCH_BOOT_ROUNDS=${BENCH_BOOT_ROUNDS:-5} \
            scripts/testbed/run-in-testbed.sh scripts/bench/boot-bench.sh
        ;;
    gfn-lookup)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        build_bench
        gfn_lookup
        ;;
    tracked-write)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        require_kvm
        build_bench
        tracked_write
        ;;
    tracking-ops)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        require_kvm
        build_bench
        tracking_ops
        ;;
    tracked-write-oop)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        require_kvm
        build_bench
        tracked_write_oop
        ;;
    tracking-scale)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        require_kvm
        build_bench
        "$BENCH_BIN" tracking-scale trap-accesses || die "kvmsharp-bench tracking-scale failed"
        "$BENCH_BIN" tracking-scale trap-writes | grep -v '^ratio=' || die "kvmsharp-bench tracking-scale trap-writes failed"
        ;;
    dirty)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        require_kvm
        build_bench
        dirty_bench
        ;;
    blk)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        [[ -n ${BENCH_BLK_AA:-} ]] || publish_aot
        blk_bench
        ;;
    net)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        publish_aot
        command -v gcc >/dev/null || die "gcc is required to build the guest's net_xfer"
        eval "$(scripts/guest/fetch-guest.sh)"
        export KVMSHARP_GUEST_KERNEL=$KERNEL KVMSHARP_GUEST_INITRD=$INITRD KVMSHARP_AOT_BIN=$AOT_DIR/kvmsharp
        TESTBED_ENV="BENCH_NET_ROUNDS BENCH_NET_MIB BENCH_NET_TIMEOUT ${TESTBED_ENV:-}" \
            scripts/testbed/run-in-testbed.sh scripts/bench/net-bench.sh
        ;;
    # boot) ... ;;   (later benchmarks go here)
    -h|--help|help)
        usage
        ;;
    *)
        [[ -n ${1:-} ]] && echo "bench.sh: unknown command '$1'" >&2
        usage
        exit 2
        ;;
esac
