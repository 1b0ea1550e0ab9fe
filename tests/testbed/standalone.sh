# shellcheck shell=bash
# What boot-tests.sh provides to the check files it sources (report, $repo, $bin, $timeout_s, $work),
# for running one of them alone:
#   testbed_standalone NAME MAIN-FUNCTION [CLEANUP-COMMAND]
# runs MAIN-FUNCTION, prints "NAME: N passed, N failed" and returns 0 only when none failed.
# TESTBED_STANDALONE_NO_GUEST=1: the check boots no Linux guest (KVMSHARP_GUEST_* not required).
testbed_standalone() {
    local name=$1 main=$2 cleanup=${3:-}
    set -uo pipefail
    if [[ ${TESTBED_STANDALONE_NO_GUEST:-0} != 1 ]]; then
        : "${KVMSHARP_GUEST_KERNEL:?set KVMSHARP_GUEST_KERNEL (scripts/guest/fetch-guest.sh prints it)}"
        : "${KVMSHARP_GUEST_INITRD:?set KVMSHARP_GUEST_INITRD}"
    fi
    repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
    bin=${KVMSHARP_AOT_BIN:-$repo/artifacts/aot/kvmsharp}
    [[ -x $bin ]] || { echo "$name: no NativeAOT kvmsharp at $bin" >&2; exit 2; }
    timeout_s=${KVMSHARP_BOOT_TIMEOUT:-300}
    work=$(mktemp -d)
    # shellcheck disable=SC2064 # expanded now, on purpose: $work and the cleanup are fixed from here on
    trap "${cleanup:+$cleanup; }rm -rf '$work'" EXIT
    passed=0 failed=0
    "$main"
    echo "$name: $passed passed, $failed failed"
    [ "$failed" = 0 ]
}

report() { # NAME OK DETAIL
    if [ "$2" = 1 ]; then
        echo "PASS: $1 ($3)"
        passed=$((passed + 1))
    else
        echo "FAIL: $1 ($3)"
        echo "----- stdout (tail) -----"; tail -n 40 "$work/$1.out" 2>/dev/null
        echo "----- stderr (tail) -----"; tail -n 40 "$work/$1.err" 2>/dev/null
        failed=$((failed + 1))
    fi
}
