#!/usr/bin/env bash
# Multiboot check of issue 11 (point 5), run INSIDE the nested testbed: the multiboot test kernel of
# MultibootBootTests (written by `kvmsharp-bench multiboot-kernel`, assembled with Iced) boots under the
# NativeAOT kvmsharp with 4 vCPUs and a module; it checks eax = 0x2BADB002 and the multiboot info
# (cmdline, mem_lower/mem_upper, mmap, the module's bytes and string, boot loader name), reads fw_cfg
# (signature, id, vCPU count, RAM size, file directory), starts its 3 APs with INIT/SIPI through the
# LAPIC and writes what it saw to QEMU's isa-debug-exit (--debug-exit port=0xf4,width=4,qemu=on):
# passes when kvmsharp exits with (value << 1) | 1 of the all-passed value.
# Report lines as boot-tests.sh prints them (PASS:/FAIL: NAME (DETAIL)).
#
# boot-tests.sh sources this file (it provides report, $work, $bin, $repo and $timeout_s). Run alone
# (after a Release build and the NativeAOT publish) it prints its own "multiboot-tests: N passed, N failed":
#   tests/testbed/multiboot-tests.sh

multiboot_tests_main() {
    local repo_dir bench dir start
    repo_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
    bench=$repo_dir/tests/KvmSharp.Benchmarks/bin/Release/net10.0/kvmsharp-bench.dll
    dir=$work/multiboot
    # KEY=VALUE lines: kernel, initrd, cmdline, debug-exit, expected-value, expected-status.
    if ! dotnet "$bench" multiboot-kernel "$dir" 32 4 >"$work/multiboot-kernel.out" 2>&1; then
        cp "$work/multiboot-kernel.out" "$work/multiboot.err"
        : >"$work/multiboot.out"
        report multiboot 0 "kvmsharp-bench multiboot-kernel failed"
        return
    fi
    mb() { sed -n "s/^$1=//p" "$work/multiboot-kernel.out"; }
    start=$(date +%s.%N)
    "$bin" run --kernel "$(mb kernel)" --initrd "$(mb initrd)" --cmdline "$(mb cmdline)" --memory 32M --cpus 4 \
        --debug-exit "$(mb debug-exit)" --timeout "$timeout_s" >"$work/multiboot.out" 2>"$work/multiboot.err" </dev/null
    rc=$?
    seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    local ok=0 wrote
    wrote=$(grep -o 'guest wrote 0x[0-9a-f]*' "$work/multiboot.err" | head -n 1)
    [[ $rc == "$(mb expected-status)" && $wrote == "guest wrote $(mb expected-value)" ]] && ok=1
    report multiboot "$ok" "exit $rc (expected $(mb expected-status)) in ${seconds}s; ${wrote:-no debug-exit write} (expected $(mb expected-value): bits 0-6 failed checks, bits 8-15 APs counted)"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    # Standalone: what boot-tests.sh would provide.
    # shellcheck source=tests/testbed/standalone.sh
    . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/standalone.sh"
    TESTBED_STANDALONE_NO_GUEST=1
    testbed_standalone multiboot-tests multiboot_tests_main
else
    multiboot_tests_main
fi
