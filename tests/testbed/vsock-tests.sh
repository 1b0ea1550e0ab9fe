#!/usr/bin/env bash
# vsock checks of issue 11, run INSIDE the nested testbed (boot-tests.sh sources this file):
#   vsock-unsafe-dir     --vsock with its socket in a directory other users can write is refused
#                        before boot (exit 2, the reason named, no socket created).
#   one boot with --vsock cid=3,socket=PATH and tests/testbed/vsock-guest.c (built here with
#   gcc -static, in an initrd layer run by kvmsharp.run=), the host side being
#   `kvmsharp-bench vsock-check PATH MIB` (tests/KvmSharp.Benchmarks/VsockCheck.cs), started first:
#   vsock-echo, vsock-bulk-echo (MIB MiB to the guest and back, compared), vsock-guest-to-host and
#   vsock-host-to-guest (a guest-initiated connection to PATH_6000, MIB MiB each way, compared on
#   both ends), vsock-concurrent-connections (100 at once), vsock-refused-port, vsock-host-abrupt-close,
#   vsock-guest-abrupt-close and vsock-guest-closes-host-connection (abrupt closes on both sides),
#   vsock-boot (the guest program ended and the VM powered off, status 0).
# KVMSHARP_VSOCK_MIB sets MIB (default 64), KVMSHARP_VSOCK_TIMEOUT the boot's limit in seconds
# (default 1500: 64 MiB four times over virtio under TCG takes minutes).
#
# Run alone it prints its own "vsock-tests: N passed, N failed":
#   KVMSHARP_GUEST_KERNEL=... KVMSHARP_GUEST_INITRD=... tests/testbed/vsock-tests.sh

vsock_tests_main() {
    local repo_dir bench mib limit dir sock tool tool_rc busybox ok line name detail
    repo_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
    bench=$repo_dir/tests/KvmSharp.Benchmarks/bin/Release/net10.0/kvmsharp-bench.dll
    mib=${KVMSHARP_VSOCK_MIB:-64}
    limit=${KVMSHARP_VSOCK_TIMEOUT:-1500}

    # ---- the socket's directory must be private (no boot) ----------------------------------------
    mkdir -p "$work/vsock-open" && chmod 777 "$work/vsock-open"
    "$bin" run --kernel "$KVMSHARP_GUEST_KERNEL" --initrd "$KVMSHARP_GUEST_INITRD" --memory 512M \
        --vsock "cid=3,socket=$work/vsock-open/v.sock" --timeout 60 >"$work/vsock-unsafe-dir.out" 2>"$work/vsock-unsafe-dir.err" </dev/null
    rc=$?
    ok=0
    [[ $rc == 2 ]] && grep -q "writable by other users" "$work/vsock-unsafe-dir.err" && [[ ! -e $work/vsock-open/v.sock ]] && ok=1
    report vsock-unsafe-dir "$ok" "exit $rc: $(head -c 160 "$work/vsock-unsafe-dir.err")"

    # ---- the guest program, as an initrd layer ----------------------------------------------------
    mkdir -p "$work/vsock-layer/vsock"
    if ! gcc -O2 -Wall -Wextra -static -o "$work/vsock-layer/vsock/vsock-guest" "$repo_dir/tests/testbed/vsock-guest.c" >"$work/vsock-boot.err" 2>&1; then
        report vsock-boot 0 "gcc -static of tests/testbed/vsock-guest.c failed (libc6-dev?)"
        return 0
    fi
    printf '#!/bin/sh\nexec /vsock/vsock-guest %s\n' "$mib" >"$work/vsock-layer/vsock/run.sh"
    chmod 755 "$work/vsock-layer/vsock/run.sh"
    # shellcheck source=scripts/guest/debcache.sh
    if ! busybox=$(KC_PROG=vsock-tests.sh; . "$repo_dir/scripts/guest/debcache.sh"; kc_busybox_binary) ||
        ! (KC_PROG=vsock-tests.sh; . "$repo_dir/scripts/guest/debcache.sh"; kc_pack_initramfs "$work/vsock-layer" "$work/vsock-layer.cpio.gz" "$busybox") 2>>"$work/vsock-boot.err"; then
        report vsock-boot 0 "packing the initrd layer failed"
        return 0
    fi
    # The kernel unpacks concatenated cpio archives in turn: the base initramfs, then the layer.
    cat "$KVMSHARP_GUEST_INITRD" "$work/vsock-layer.cpio.gz" >"$work/vsock-initrd.img"

    # ---- the host side first (it listens on PATH_6000/_6001), then the VM -----------------------
    dir=$(mktemp -d) && chmod 700 "$dir"
    sock=$dir/v.sock
    dotnet "$bench" vsock-check "$sock" "$mib" "$limit" >"$work/vsock-host.out" 2>&1 &
    tool=$!
    for _ in $(seq 1 240); do
        [[ -S ${sock}_6001 ]] && break
        kill -0 "$tool" 2>/dev/null || break
        sleep 0.5
    done
    local start
    start=$(date +%s.%N)
    "$bin" run --kernel "$KVMSHARP_GUEST_KERNEL" --initrd "$work/vsock-initrd.img" --memory 512M --cpus 1 \
        --cmdline "console=ttyS0 reboot=k panic=-1 quiet kvmsharp.run=/vsock/run.sh kvmsharp.cmd=poweroff" \
        --vsock "cid=3,socket=$sock" --timeout "$limit" >"$work/vsock-boot.out" 2>>"$work/vsock-boot.err" </dev/null
    rc=$?
    seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    # The tool ends by itself once the guest's program is told to quit; give it a little after the VM.
    for _ in $(seq 1 60); do
        kill -0 "$tool" 2>/dev/null || break
        sleep 1
    done
    kill "$tool" 2>/dev/null
    wait "$tool"
    tool_rc=$?
    rm -rf "$dir"

    # One report per host check, each showing the host tool's and the VM's output when it fails.
    for name in echo bulk-echo guest-to-host host-to-guest concurrent-connections refused-port host-abrupt-close guest-abrupt-close guest-closes-host-connection; do
        cat "$work/vsock-host.out" "$work/vsock-boot.out" >"$work/vsock-$name.out" 2>/dev/null
        cp "$work/vsock-boot.err" "$work/vsock-$name.err" 2>/dev/null
        line=$(grep -E "^(ok|FAIL): $name \(" "$work/vsock-host.out" | head -n 1)
        detail=${line#*(}
        detail=${detail%)}
        [[ -n $line ]] || detail="no result from kvmsharp-bench vsock-check (exit $tool_rc)"
        ok=0
        [[ $line == "ok: "* ]] && ok=1
        report "vsock-$name" "$ok" "$detail"
    done

    # The guest compared the host's bytes on its own connection.
    local guest_out
    guest_out=$(tr -d '\r' <"$work/vsock-boot.out" | sed -n 's/^KVMSHARP-VSOCK-OUT=//p' | head -n 1)
    cat "$work/vsock-host.out" "$work/vsock-boot.out" >"$work/vsock-guest-verifies.out" 2>/dev/null
    cp "$work/vsock-boot.err" "$work/vsock-guest-verifies.err" 2>/dev/null
    ok=0
    [[ $guest_out == "sent $((mib << 20)) ok received $((mib << 20)) mismatches 0" ]] && ok=1
    report vsock-guest-verifies "$ok" "guest: ${guest_out:-no KVMSHARP-VSOCK-OUT line}"

    ok=0
    [[ $rc == 0 && $tool_rc == 0 ]] && grep -aq "KVMSHARP-VSOCK-DONE" "$work/vsock-boot.out" && ok=1
    cat "$work/vsock-host.out" "$work/vsock-boot.out" >"$work/vsock-boot.out.all" 2>/dev/null && mv "$work/vsock-boot.out.all" "$work/vsock-boot.out"
    report vsock-boot "$ok" "exit $rc in ${seconds}s, host tool exit $tool_rc, $mib MiB"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    # Standalone: what boot-tests.sh would provide.
    # shellcheck source=tests/testbed/standalone.sh
    . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/standalone.sh"
    testbed_standalone vsock-tests vsock_tests_main
else
    vsock_tests_main
fi
