#!/usr/bin/env bash
# Testbed smoke test: boots the nested-KVM L1 (scripts/testbed/run-in-testbed.sh) and checks that
# its /dev/kvm has SMM (KVM_CAP_X86_SMM=1), two memslot address spaces
# (KVM_CAP_MULTI_ADDRESS_SPACE=2, an as_id 1 slot is accepted) and runs a tiny real-mode guest.
# Also checks the exit status and the output channel of the testbed itself.
#
#   tests/testbed/smoke.sh        exit 0 = all good; prints the facts it saw
#
# Needs gcc (the check is compiled on the host, statically, into a temp dir, and run in L1 via the
# shared root). Takes ~15-60 s, depending on the host's load (L1 runs under TCG).
set -euo pipefail

here=$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")
runner=$here/../../scripts/testbed/run-in-testbed.sh

command -v gcc >/dev/null || { echo "smoke: needs gcc" >&2; exit 1; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kvmsharp-smoke.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
# Static: the binary does not depend on anything but the kernel inside L1.
gcc -O2 -static -o "$tmp/kvm_smm_check" "$here/kvm_smm_check.c" 2>/dev/null ||
    gcc -O2 -o "$tmp/kvm_smm_check" "$here/kvm_smm_check.c"

start=$(date +%s.%N)
set +e
# Run from $tmp: the command must start in the caller's directory, and its status come back.
# shellcheck disable=SC2016 # $(pwd) is for the shell inside L1
output=$(cd "$tmp" && "$runner" './kvm_smm_check && echo "cwd=$(pwd)" && exit 7')
rc=$?
set -e
elapsed=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
printf '%s\n' "$output" | sed 's/^/  L1| /'

ok=1
check() { grep -qx -- "$1" <<<"$output" || { echo "smoke: missing '$1'" >&2; ok=0; }; }
check 'KVM_CAP_X86_SMM=1'
check 'KVM_CAP_MULTI_ADDRESS_SPACE=2'
check 'SMM_MEMSLOT=ok'
check 'GUEST_OUT=0x42'
check 'GUEST_HLT=ok'
check 'kvm_smm_check: ok'
check "cwd=$tmp"
[[ $rc == 7 ]] || { echo "smoke: run-in-testbed exited $rc, expected the command's 7" >&2; ok=0; }
[[ $output != *$'\r'* ]] || { echo "smoke: carriage returns in the output channel" >&2; ok=0; }

if ((ok)); then
    echo "smoke: ok (${elapsed} s for the whole testbed round trip)"
else
    echo "smoke: FAILED" >&2
    exit 1
fi
