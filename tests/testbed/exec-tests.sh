#!/usr/bin/env bash
# `kvmsharp exec` (issue 11, point 4), run INSIDE the nested testbed: two exec runs of Debian's kernel
# with the initramfs of scripts/guest/fetch-guest.sh (fuse, virtiofs, overlay):
#   exec-status-streams  sh -c 'cat /etc/hostname; echo err >&2; exit 7' prints this host's hostname
#                        on stdout only, "err" on stderr only, and exits 7
#   exec-rw-lands        with --rw DIR, sh -c 'echo TOKEN > DIR/f' writes DIR/f on the host
# Report lines as boot-tests.sh prints them (PASS:/FAIL: NAME (DETAIL)).
#
# boot-tests.sh sources this file (it provides report, $work, $bin and $timeout_s). Run alone it
# prints its own "exec-tests: N passed, N failed":
#   KVMSHARP_GUEST_KERNEL=... KVMSHARP_GUEST_INITRD=... tests/testbed/exec-tests.sh
# Needs root (virtiofsd's sandbox) and virtiofsd (PATH or /usr/lib/qemu/virtiofsd).

exec_tests_main() {
    local rc seconds start hostname_now out err rw token
    out=$work/exec-status-streams.out err=$work/exec-status-streams.err
    hostname_now=$(cat /etc/hostname 2>/dev/null)
    start=$(date +%s.%N)
    (cd / && "$bin" exec --kernel "$KVMSHARP_GUEST_KERNEL" --initrd "$KVMSHARP_GUEST_INITRD" --timeout "$timeout_s" \
        -- sh -c 'cat /etc/hostname; echo err >&2; exit 7' >"$out" 2>"$err" </dev/null)
    rc=$?
    seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    local ok=0
    [[ $rc == 7 && $(cat "$out") == "$hostname_now" && $(cat "$err") == err ]] && ok=1
    report exec-status-streams "$ok" "exit $rc (want 7) in ${seconds}s; stdout '$(head -c 200 "$out" | tr '\n' '|')' (host: '$hostname_now'); stderr '$(head -c 200 "$err" | tr '\n' '|')' (want 'err')"

    rw=$work/exec-rw
    mkdir -p "$rw"
    mount -t tmpfs -o mode=0755,size=16m kvmsharp-exec-rw "$rw" 2>/dev/null || true
    token=exec-wrote-$RANDOM-$RANDOM
    start=$(date +%s.%N)
    (cd / && "$bin" exec --kernel "$KVMSHARP_GUEST_KERNEL" --initrd "$KVMSHARP_GUEST_INITRD" --timeout "$timeout_s" --rw "$rw" \
        -- sh -c "echo $token > '$rw/f'" >"$work/exec-rw-lands.out" 2>"$work/exec-rw-lands.err" </dev/null)
    rc=$?
    seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    ok=0
    [[ $rc == 0 && $(cat "$rw/f" 2>/dev/null) == "$token" ]] && ok=1
    report exec-rw-lands "$ok" "exit $rc in ${seconds}s; host reads '$(cat "$rw/f" 2>/dev/null)' (guest wrote '$token')"
    umount "$rw" 2>/dev/null || true
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    # Standalone: what boot-tests.sh would provide.
    # shellcheck source=tests/testbed/standalone.sh
    . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/standalone.sh"
    testbed_standalone exec-tests exec_tests_main 'umount "$work/exec-rw" 2>/dev/null'
else
    exec_tests_main
fi
