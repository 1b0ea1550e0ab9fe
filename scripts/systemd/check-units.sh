#!/usr/bin/env bash
# Checks the systemd units in this directory as CI does: `systemd-analyze verify` must be silent (a
# warning such as an unknown key fails too), and `systemd-analyze security --offline=true` must rate
# each unit's exposure at most MAX_EXPOSURE (default 3.0). Prints "exposure UNIT X.X" per unit.
# verify runs in a scratch root (the host's unit directory copied in, an executable placeholder at
# ExecStart's path), so it needs neither an installed kvmsharp nor a running systemd.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
max=${MAX_EXPOSURE:-3.0}
command -v systemd-analyze >/dev/null || { echo "check-units: systemd-analyze is missing (apt-get install systemd)" >&2; exit 2; }

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system" "$root/opt/kvmsharp" "$root/etc/kvmsharp"
cp -r /usr/lib/systemd/system "$root/usr/lib/systemd/"
printf '#!/bin/sh\nexit 0\n' > "$root/opt/kvmsharp/kvmsharp"
chmod +x "$root/opt/kvmsharp/kvmsharp"
echo '{}' > "$root/etc/kvmsharp/ci.json"

status=0
units=()
for file in "$here"/*.service; do
  name=$(basename "$file")
  cp "$file" "$root/etc/systemd/system/$name"
  # A template is verified and rated as an instance.
  if [[ $name == *@.service ]]; then
    instance=${name/@.service/@ci.service}
    ln -s "$name" "$root/etc/systemd/system/$instance"
    units+=("$instance")
  else
    units+=("$name")
  fi
done

for unit in "${units[@]}"; do
  if ! out=$(systemd-analyze verify --root="$root" "$unit" 2>&1) || [ -n "$out" ]; then
    echo "check-units: systemd-analyze verify $unit failed:" >&2
    echo "$out" >&2
    status=1
  fi
  report=$(systemd-analyze security --offline=true --root="$root" "$unit" 2>&1) || true
  exposure=$(sed -n 's/^→ Overall exposure level for .*: \([0-9.]*\) .*/\1/p' <<<"$report")
  if [ -z "$exposure" ]; then
    echo "check-units: systemd-analyze security gave no exposure for $unit:" >&2
    echo "$report" >&2
    status=1
    continue
  fi
  echo "exposure $unit $exposure"
  if awk -v e="$exposure" -v m="$max" 'BEGIN { exit !(e > m) }'; then
    echo "check-units: $unit's exposure $exposure is above $max:" >&2
    grep '^✗' <<<"$report" >&2 || true
    status=1
  fi
done
exit $status
