#!/usr/bin/env bash
# KvmSharp benchmarks. Each prints per-round figures and, as its last line, a ratio against a
# reference doing the same work in the same run (see /work/shared/DESIGN.md, "Measuring").
#
#   scripts/bench.sh exit-roundtrip   ns per port-I/O exit at CPL0: KvmSharp vs a minimal C VMM
#                                     (gcc -O2 scripts/bench/exit_roundtrip.c), same guest binary;
#                                     prints the gfn-lookup lines first; last line: ratio=X.XX
#   scripts/bench.sh gfn-lookup       ns per MemslotSnapshot.TryFindByGfn at 1, 1000, 32000 slots
#
# Environment: BENCH_ROUNDS (default 5) rounds, each running C and KvmSharp once, alternating which
# goes first; BENCH_EXITS (default 20000) exits per run; BENCH_UNROLL (default 1) `out`s per guest
# loop iteration; BENCH_WARMUPS (default 2) untimed KvmSharp VMs per run before the timed one (JIT);
# BENCH_RAW=1 also runs, each round, the same loop written on KvmSharp.Kvm alone (diagnostic).
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
environment: BENCH_ROUNDS=5 BENCH_EXITS=20000 BENCH_UNROLL=1 BENCH_WARMUPS=2 BENCH_RAW=
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

case ${1:-} in
    exit-roundtrip)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        require_kvm
        build_bench
        exit_roundtrip
        ;;
    gfn-lookup)
        [[ $# -eq 1 ]] || { usage; exit 2; }
        build_bench
        gfn_lookup
        ;;
    # tracked-write) ... ;;   boot) ... ;;   (later benchmarks go here)
    -h|--help|help)
        usage
        ;;
    *)
        [[ -n ${1:-} ]] && echo "bench.sh: unknown command '$1'" >&2
        usage
        exit 2
        ;;
esac
