#!/usr/bin/env bash
# virtio-net benchmark, run INSIDE the nested testbed (scripts/bench.sh net runs it there): the same
# tap in a network namespace made for the run (10.77.0.1/24 on the host end) serves KvmSharp (the
# NativeAOT binary, --net tap=ktap0) and QEMU (-netdev tap,vhost=off -device virtio-net-pci), same
# kernel, same initrd (fetch-guest.sh's plus the layer of tests/testbed/net-tests.sh), same command
# line, alternating who goes first, BENCH_NET_ROUNDS rounds. In each VM the guest's net_xfer
# (scripts/bench/net_xfer.c) receives BENCH_NET_MIB MiB over TCP from the host's net_xfer
# (host→guest), then sends as many (guest→host); each is timed inside the guest, from connect to
# the peer's close, so boot time is not part of it. Prints every round, the medians, then
#   ratio-rx=X.XX   KvmSharp / QEMU time for host→guest
#   ratio-tx=X.XX   KvmSharp / QEMU time for guest→host
#   ratio=X.XX      the larger (worse) of the two: <= 1.00 means KvmSharp is at least as fast both ways
# Lower is better.
#
#   KVMSHARP_GUEST_KERNEL=... KVMSHARP_GUEST_INITRD=... [KVMSHARP_AOT_BIN=...] net-bench.sh
set -euo pipefail

: "${KVMSHARP_GUEST_KERNEL:?}" "${KVMSHARP_GUEST_INITRD:?}"
repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
bin=${KVMSHARP_AOT_BIN:-$repo/artifacts/aot/kvmsharp}
[[ -x $bin ]] || { echo "net-bench: no NativeAOT kvmsharp at $bin (scripts/bench.sh net publishes it)" >&2; exit 2; }
rounds=${BENCH_NET_ROUNDS:-3}
mib=${BENCH_NET_MIB:-32}
timeout_s=${BENCH_NET_TIMEOUT:-900}
for v in rounds mib timeout_s; do
    [[ ${!v} =~ ^[0-9]+$ ]] && ((${!v} >= 1)) || { echo "net-bench: $v must be a whole number >= 1, not '${!v}'" >&2; exit 2; }
done
work=$(mktemp -d)
ns=kvs-netbench-$$ tap=ktap0 mac=52:54:00:77:00:02
cleanup() { ip netns del "$ns" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=tests/testbed/net-tests.sh
NET_TESTS_LIBRARY=1 . "$repo/tests/testbed/net-tests.sh"
net_guest_layer "$work/net" "$work/initrd-net.img" || exit 1
net_namespace_up "$ns" "$tap" || { echo "net-bench: cannot create namespace $ns with tap $tap (tun module?)" >&2; exit 1; }
net_xfer=$work/net/layer/net/net_xfer

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
field() { tr -d '\r' <"$2" | sed -n "s/^$1=//p" | tail -n 1; }

# run_vm NAME: one VM (kvmsharp or qemu) on the tap; sets $rx_s (host→guest) and $tx_s (guest→host).
run_vm() {
    local name=$1 cmdline rc sender receiver
    cmdline="console=ttyS0 reboot=k panic=-1 quiet kvmsharp.run=/net/run.sh kvmsharp.cmd=poweroff nettest.mode=bench nettest.mib=$mib"
    local -a cmd
    if [[ $name == kvmsharp ]]; then
        cmd=("$bin" run --kernel "$KVMSHARP_GUEST_KERNEL" --initrd "$work/initrd-net.img" --memory 512M --cpus 1
            --cmdline "$cmdline" --timeout "$timeout_s" --net "tap=$tap,mac=$mac" --no-rng)
    else
        # shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
        cmd=(timeout "$timeout_s" qemu-system-x86_64 -M pc -accel kvm -cpu host -m 512 -smp 1 -nodefaults
            -no-user-config -display none -no-reboot -serial stdio
            -netdev "tap,id=n0,ifname=$tap,script=no,downscript=no,vhost=off" -device "virtio-net-pci,netdev=n0,mac=$mac"
            -kernel "$KVMSHARP_GUEST_KERNEL" -initrd "$work/initrd-net.img" -append "$cmdline")
    fi
    ip netns exec "$ns" "$net_xfer" listen-send 5001 $((mib * 1048576)) 2>"$work/$name.host-send" &
    sender=$!
    ip netns exec "$ns" "$net_xfer" listen-recv 5002 discard 2>"$work/$name.host-recv" &
    receiver=$!
    set +e
    ip netns exec "$ns" "${cmd[@]}" >"$work/$name.out" 2>"$work/$name.err" </dev/null
    rc=$?
    set -e
    sleep 1
    kill "$sender" "$receiver" 2>/dev/null || true
    wait "$sender" "$receiver" 2>/dev/null || true
    rx_s=$(field recv_s "$work/$name.out")
    tx_s=$(field send_s "$work/$name.out")
    local rx_bytes tx_bytes
    rx_bytes=$(field recv_bytes "$work/$name.out")
    tx_bytes=$(field recv_bytes "$work/$name.host-recv")
    if [[ -z $rx_s || -z $tx_s || $rx_bytes != $((mib * 1048576)) || $tx_bytes != $((mib * 1048576)) ]]; then
        echo "net-bench: $name (exit $rc) did not move $mib MiB both ways (guest got ${rx_bytes:-0}, host got ${tx_bytes:-0}); its console and stderr:" >&2
        tail -n 30 "$work/$name.out" >&2
        tail -n 30 "$work/$name.err" >&2
        exit 1
    fi
}

mbps() { awk -v s="$1" -v m="$mib" 'BEGIN { printf "%.1f", m * 8.388608 / s }'; }
echo "net-bench: $rounds rounds; $mib MiB over TCP host→guest, then guest→host, timed in the guest; tap $tap in namespace $ns"
echo "  kvmsharp: $bin (NativeAOT) run --memory 512M --cpus 1 --net tap=$tap --no-rng"
echo "  qemu:     qemu-system-x86_64 -M pc -accel kvm -m 512 -smp 1 -netdev tap,vhost=off -device virtio-net-pci"
k_rx=() q_rx=() k_tx=() q_tx=()
for round in $(seq 1 "$rounds"); do
    if ((round % 2)); then vmm_order="kvmsharp qemu"; else vmm_order="qemu kvmsharp"; fi
    for vmm in $vmm_order; do
        run_vm "$vmm"
        if [[ $vmm == kvmsharp ]]; then
            k_rx+=("$rx_s"); k_tx+=("$tx_s"); k_line="rx ${rx_s}s ($(mbps "$rx_s") Mbit/s) tx ${tx_s}s ($(mbps "$tx_s") Mbit/s)"
        else
            q_rx+=("$rx_s"); q_tx+=("$tx_s"); q_line="rx ${rx_s}s ($(mbps "$rx_s") Mbit/s) tx ${tx_s}s ($(mbps "$tx_s") Mbit/s)"
        fi
    done
    echo "round $round: kvmsharp $k_line | qemu $q_line"
done
kr=$(median "${k_rx[@]}") qr=$(median "${q_rx[@]}") kt=$(median "${k_tx[@]}") qt=$(median "${q_tx[@]}")
echo "kvmsharp median: host→guest ${kr}s ($(mbps "$kr") Mbit/s), guest→host ${kt}s ($(mbps "$kt") Mbit/s)"
echo "qemu     median: host→guest ${qr}s ($(mbps "$qr") Mbit/s), guest→host ${qt}s ($(mbps "$qt") Mbit/s)"
awk -v kr="$kr" -v qr="$qr" -v kt="$kt" -v qt="$qt" 'BEGIN {
    r = kr / qr; t = kt / qt
    printf "ratio-rx=%.2f\nratio-tx=%.2f\nratio=%.2f\n", r, t, (r > t ? r : t)
}'
