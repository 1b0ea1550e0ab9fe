#!/usr/bin/env bash
# virtio-blk benchmark, run INSIDE the nested testbed (scripts/bench.sh blk prepares everything on
# the host and runs this there): the same raw image attached as vda, read-only, to KvmSharp (the
# NativeAOT binary, --drive file=IMG,readonly=on,cache=none) and to QEMU (-device virtio-blk-pci,
# -drive ...,readonly=on,cache=none), same kernel, same initrd, same command line, alternating who
# goes first, BENCH_BLK_ROUNDS rounds. In each VM the initrd's /bench/run.sh runs blk_read (a static C
# program, scripts/bench/blk_read.c) twice on /dev/vda with O_DIRECT: a sequential read of
# BENCH_BLK_SEQ_MIB MiB in BENCH_BLK_BLOCK_KIB KiB reads, then 4 KiB random reads (same offsets for
# both VMMs in a round) for BENCH_BLK_RAND_SECONDS. Both are timed inside the guest, so boot time is
# not part of them. Prints every round, the medians, then
#   ratio-seq=X.XX    KvmSharp / QEMU time for the sequential read
#   ratio-rand=X.XX   KvmSharp / QEMU time per random 4 KiB read
#   ratio=X.XX        the larger (worse) of the two: <= 1.00 means KvmSharp is at least as fast on both
# Lower is better.
#
#   KVMSHARP_GUEST_KERNEL=... BENCH_BLK_INITRD=... BENCH_BLK_IMAGE=... [KVMSHARP_AOT_BIN=...] blk-bench.sh
# BENCH_BLK_CACHE=none (default: host O_DIRECT, the image must be on a file system that supports it,
# in the testbed a 9p share) or writeback (the page cache; both VMMs then read through it).
set -euo pipefail

: "${KVMSHARP_GUEST_KERNEL:?}" "${BENCH_BLK_INITRD:?}" "${BENCH_BLK_IMAGE:?}"
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
bin=${KVMSHARP_AOT_BIN:-$repo/artifacts/aot/kvmsharp}
# BENCH_BLK_AA=1: an A/A run, QEMU on both sides (what the noise alone does to the ratios).
aa=${BENCH_BLK_AA:-}
[[ -n $aa || -x $bin ]] || { echo "blk-bench: no NativeAOT kvmsharp at $bin (scripts/bench.sh blk publishes it)" >&2; exit 2; }
rounds=${BENCH_BLK_ROUNDS:-3}
seq_mib=${BENCH_BLK_SEQ_MIB:-256}
block_kib=${BENCH_BLK_BLOCK_KIB:-1024}
rand_s=${BENCH_BLK_RAND_SECONDS:-5}
cache=${BENCH_BLK_CACHE:-none}
timeout_s=${BENCH_BLK_TIMEOUT:-900}
for v in rounds seq_mib block_kib rand_s timeout_s; do
    [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} >= 1)) || { echo "blk-bench: $v must be a whole number >= 1, not '${!v}'" >&2; exit 2; }
done
[[ $cache == none || $cache == writeback ]] || { echo "blk-bench: BENCH_BLK_CACHE must be none or writeback" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [[ $cache == writeback ]]; then
    # In RAM (the testbed's /tmp is tmpfs-backed), so the page cache both VMMs read through is memory.
    cp "$BENCH_BLK_IMAGE" "$work/blk.img"
    BENCH_BLK_IMAGE=$work/blk.img
fi

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
field() { tr -d '\r' <"$2" | sed -n "s/^$1=//p" | tail -n 1; }

# run_vm NAME SEED: boots NAME (kvmsharp or qemu) with the benchmark; sets $seq_s, $rand_us, $rand_ops.
run_vm() {
    local name=$1 seed=$2 cmdline rc
    cmdline="console=ttyS0 reboot=k panic=-1 quiet kvmsharp.run=/bench/run.sh kvmsharp.cmd=poweroff"
    cmdline+=" blkbench.seq=$seq_mib blkbench.block=$block_kib blkbench.rand=$rand_s blkbench.seed=$seed"
    local -a cmd
    if [[ $name == kvmsharp && -z $aa ]]; then
        local drive="file=$BENCH_BLK_IMAGE,readonly=on"
        [[ $cache == none ]] && drive+=",cache=none"
        cmd=("$bin" run --kernel "$KVMSHARP_GUEST_KERNEL" --initrd "$BENCH_BLK_INITRD" --memory 512M --cpus 1
            --cmdline "$cmdline" --timeout "$timeout_s" --drive "$drive" --no-rng)
    else
        # shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
        cmd=(timeout "$timeout_s" qemu-system-x86_64 -M pc -accel kvm -cpu host -m 512 -smp 1 -nodefaults
            -no-user-config -display none -no-reboot -serial stdio
            -drive "if=none,id=d0,format=raw,file=$BENCH_BLK_IMAGE,readonly=on,cache=$cache,aio=threads,file.locking=off"
            -device virtio-blk-pci,drive=d0
            -kernel "$KVMSHARP_GUEST_KERNEL" -initrd "$BENCH_BLK_INITRD" -append "$cmdline")
    fi
    set +e
    "${cmd[@]}" >"$work/$name.out" 2>"$work/$name.err" </dev/null
    rc=$?
    set -e
    seq_s=$(field seq_s "$work/$name.out")
    rand_us=$(field rand_us_per_op "$work/$name.out")
    rand_ops=$(field rand_ops "$work/$name.out")
    if [[ -z $seq_s || -z $rand_us ]] || ! grep -q BLKBENCH-END "$work/$name.out"; then
        echo "blk-bench: $name (exit $rc) printed no figures; its console and stderr:" >&2
        tail -n 30 "$work/$name.out" >&2
        tail -n 30 "$work/$name.err" >&2
        exit 1
    fi
}

echo "blk-bench: $rounds rounds; image $(basename "$BENCH_BLK_IMAGE") ($(($(stat -c %s "$BENCH_BLK_IMAGE") >> 20)) MiB, read-only), host cache=$cache"
echo "  guest: O_DIRECT sequential read of $seq_mib MiB in $block_kib KiB reads, then 4 KiB random reads (queue depth 1) for ${rand_s} s"
echo "  kvmsharp: $bin (NativeAOT) run --memory 512M --cpus 1 --drive file=IMG,readonly=on$([[ $cache == none ]] && echo ,cache=none) --no-rng"
[[ -z $aa ]] || echo "  BENCH_BLK_AA=1: an A/A run, QEMU on the kvmsharp side too"
echo "  qemu:     qemu-system-x86_64 -M pc -accel kvm -m 512 -smp 1 -device virtio-blk-pci (cache=$cache, aio=threads)"
k_seq=() q_seq=() k_rand=() q_rand=() pair_seq=() pair_rand=()
for round in $(seq 1 "$rounds"); do
    seed=$((round * 7919))
    if ((round % 2)); then order="kvmsharp qemu"; else order="qemu kvmsharp"; fi
    for vmm in $order; do
        run_vm "$vmm" "$seed"
        if [[ $vmm == kvmsharp ]]; then
            k_seq+=("$seq_s"); k_rand+=("$rand_us"); k_line="seq ${seq_s}s rand ${rand_us} us/op ($rand_ops ops)"
        else
            q_seq+=("$seq_s"); q_rand+=("$rand_us"); q_line="seq ${seq_s}s rand ${rand_us} us/op ($rand_ops ops)"
        fi
    done
    echo "round $round: kvmsharp $k_line | qemu $q_line"
    pair_seq+=("$(awk -v k="${k_seq[-1]}" -v q="${q_seq[-1]}" 'BEGIN { printf "%.4f", k / q }')")
    pair_rand+=("$(awk -v k="${k_rand[-1]}" -v q="${q_rand[-1]}" 'BEGIN { printf "%.4f", k / q }')")
done
ks=$(median "${k_seq[@]}") qs=$(median "${q_seq[@]}") kr=$(median "${k_rand[@]}") qr=$(median "${q_rand[@]}")
echo "kvmsharp median: seq ${ks}s ($(awk -v s="$ks" -v m="$seq_mib" 'BEGIN { printf "%.1f", m / s }') MiB/s), rand ${kr} us/op"
echo "qemu     median: seq ${qs}s ($(awk -v s="$qs" -v m="$seq_mib" 'BEGIN { printf "%.1f", m / s }') MiB/s), rand ${qr} us/op"
# A diagnostic that pairs runs next to each other in time (the testbed's speed drifts with the host's load).
echo "median of per-round ratios: seq $(median "${pair_seq[@]}" | awk '{ printf "%.2f", $1 }'), rand $(median "${pair_rand[@]}" | awk '{ printf "%.2f", $1 }')"
awk -v ks="$ks" -v qs="$qs" -v kr="$kr" -v qr="$qr" 'BEGIN {
    s = ks / qs; r = kr / qr
    printf "ratio-seq=%.2f\nratio-rand=%.2f\nratio=%.2f\n", s, r, (s > r ? s : r)
}'
