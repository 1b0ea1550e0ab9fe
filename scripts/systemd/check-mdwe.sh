#!/usr/bin/env bash
# Runs the NativeAOT kvmsharp (the built-in guest) with the kernel's memory-deny-write-execute on
# (prctl PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN: no W+X mapping, no mprotect adding PROT_EXEC; kept
# across execve), which is what the units' MemoryDenyWriteExecute=yes enforces. A VMM that made a W+X
# page or mprotect'ed one executable fails here as it would under systemd. Needs gcc and Linux >= 6.3.
#   scripts/systemd/check-mdwe.sh artifacts/aot/kvmsharp
set -euo pipefail
binary=${1:?usage: check-mdwe.sh PATH-TO-NATIVEAOT-kvmsharp}
[ -x "$binary" ] || { echo "check-mdwe: $binary is not an executable" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/mdwe.c" <<'C'
#include <stdio.h>
#include <sys/prctl.h>
#include <unistd.h>
#ifndef PR_SET_MDWE
#define PR_SET_MDWE 65
#define PR_MDWE_REFUSE_EXEC_GAIN 1
#endif
int main(int argc, char **argv)
{
    if (argc < 2) return 2;
    if (prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0L, 0L, 0L) != 0) { perror("prctl(PR_SET_MDWE)"); return 125; }
    execv(argv[1], argv + 1);
    perror("execv");
    return 127;
}
C
gcc -O2 -o "$work/mdwe" "$work/mdwe.c"
set +e
out=$("$work/mdwe" "$binary" run 2>&1)
status=$?
set -e
if [ $status -eq 125 ]; then
  echo "check-mdwe: this kernel has no PR_SET_MDWE (Linux >= 6.3): not checked" >&2
  exit 0
fi
if [ $status -ne 0 ] || ! grep -q "exiting with status 0" <<<"$out"; then
  echo "check-mdwe: kvmsharp failed under memory-deny-write-execute (exit $status):" >&2
  echo "$out" | tail -20 >&2
  exit 1
fi
echo "check-mdwe: the built-in guest ran under PR_SET_MDWE (MemoryDenyWriteExecute=yes holds)"
