#!/usr/bin/env bash
# Host directory shares (issue 11, virtio-fs), run INSIDE the nested testbed: one boot of Debian's
# kernel with the initramfs of scripts/guest/fetch-guest.sh (which loads fuse and virtiofs) and an
# appended initrd layer holding /share-check.sh, with two shares:
#   hostrw  (read-write) holds hello.txt; the guest mounts it (mount -t virtiofs hostrw /mnt/rw),
#           reads hello.txt, writes from-guest.txt, and tries to read a file next to the shared
#           directory on the host through '..' and through symlinks the host put in the share
#           (absolute and relative targets outside it);
#   hostro  (readonly=on) holds ro.txt; the guest reads it, and its write, mkdir and rm are refused.
# Checked from the host: the guest's file landed with its token, nothing was created or removed in
# the read-only share, the secret next to the share never showed in the guest, and no virtiofsd
# (nor its private runtime directory) is left once the VM ended.
# Report lines as boot-tests.sh prints them (PASS:/FAIL: NAME (DETAIL)).
#
# boot-tests.sh sources this file (it provides report, $work, $bin and $timeout_s). Run alone it
# prints its own "share-tests: N passed, N failed":
#   KVMSHARP_GUEST_KERNEL=... KVMSHARP_GUEST_INITRD=... tests/testbed/share-tests.sh
# Needs root (virtiofsd's namespace sandbox), virtiofsd (PATH or /usr/lib/qemu/virtiofsd) and python3
# (packs the initrd layer).

share_tests_main() {
    local base rw ro secret token hello ro_before ro_after out python layer_dir initrd left
    base=$work/shares
    mkdir -p "$base"
    # A tmpfs of our own, so the shares do not sit on the testbed's overlay/9p root.
    mount -t tmpfs -o mode=0755,size=64m kvmsharp-shares "$base" 2>/dev/null || true
    rw=$base/rw ro=$base/ro secret=$base/outside-secret
    mkdir -p "$rw" "$ro"
    token=guest-wrote-$(date +%s)-$RANDOM
    hello=host-hello-$RANDOM
    echo "$hello" >"$rw/hello.txt"
    echo "secret-$RANDOM-$RANDOM" >"$secret"
    ln -s "$secret" "$rw/escape-abs"
    ln -s ../outside-secret "$rw/escape-rel"
    echo "read-only-$RANDOM" >"$ro/ro.txt"
    ro_before=$(cd "$ro" && find . -printf '%p %s %m\n' | LC_ALL=C sort | sha256sum | cut -d' ' -f1)

    # The guest side, in an initrd layer (newc cpio, gzip) appended to the base initramfs.
    layer_dir=$work/share-layer
    mkdir -p "$layer_dir"
    cat >"$layer_dir/share-check.sh" <<'GUEST_EOF'
#!/bin/sh
# tests/testbed/share-tests.sh, guest side (kvmsharp.run=/share-check.sh).
token=
for arg in $(cat /proc/cmdline); do
    case $arg in kvmsharp.sharetoken=*) token=${arg#*=} ;; esac
done
mkdir -p /mnt/rw /mnt/ro
if mount -t virtiofs hostrw /mnt/rw; then echo "KVMSHARP-SHARE-MOUNT=ok"; else echo "KVMSHARP-SHARE-MOUNT=failed"; fi
echo "KVMSHARP-SHARE-TYPE=$(awk '$2 == "/mnt/rw" { print $3 }' /proc/mounts)"
echo "KVMSHARP-SHARE-READ=$(cat /mnt/rw/hello.txt)"
if echo "$token" >/mnt/rw/from-guest.txt && sync; then echo "KVMSHARP-SHARE-WROTE=$token"; else echo "KVMSHARP-SHARE-WROTE=failed"; fi
for p in /mnt/rw/../outside-secret /mnt/rw/../../outside-secret /mnt/rw/escape-abs /mnt/rw/escape-rel /mnt/rw/escape-rel/../outside-secret; do
    if c=$(cat "$p" 2>/dev/null); then echo "KVMSHARP-ESCAPE=$p read:$c"; else echo "KVMSHARP-ESCAPE=$p refused"; fi
done
if mount -t virtiofs hostro /mnt/ro; then echo "KVMSHARP-RO-MOUNT=ok"; else echo "KVMSHARP-RO-MOUNT=failed"; fi
echo "KVMSHARP-RO-READ=$(cat /mnt/ro/ro.txt)"
if echo x >/mnt/ro/new.txt 2>/dev/null; then echo "KVMSHARP-RO-WRITE=accepted"; else echo "KVMSHARP-RO-WRITE=refused"; fi
if mkdir /mnt/ro/newdir 2>/dev/null; then echo "KVMSHARP-RO-MKDIR=accepted"; else echo "KVMSHARP-RO-MKDIR=refused"; fi
if rm -f /mnt/ro/ro.txt 2>/dev/null && [ ! -e /mnt/ro/ro.txt ]; then echo "KVMSHARP-RO-RM=accepted"; else echo "KVMSHARP-RO-RM=refused"; fi
umount /mnt/ro; umount /mnt/rw
echo "KVMSHARP-SHARE-DONE"
GUEST_EOF
    chmod 755 "$layer_dir/share-check.sh"
    python=$(command -v python3 || echo /usr/bin/python3)
    initrd=$work/initrd-share.img
    if ! "$python" - "$layer_dir/share-check.sh" "$work/share-layer.cpio.gz" <<'PY_EOF'
import gzip, os, sys
src, out = sys.argv[1], sys.argv[2]
def entry(name, mode, data, ino):
    name_bytes = name.encode() + b"\0"
    fields = [ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name_bytes), 0]
    head = b"070701" + b"".join(b"%08X" % f for f in fields) + name_bytes
    head += b"\0" * (-len(head) % 4)
    return head + data + b"\0" * (-len(data) % 4)
data = open(src, "rb").read()
blob = entry("share-check.sh", 0o100755, data, 1) + entry("TRAILER!!!", 0, b"", 0)
with gzip.open(out, "wb") as f:
    f.write(blob)
PY_EOF
    then
        report share-mount-read 0 "cannot pack the guest's initrd layer with $python"
        return 0
    fi
    cat "$KVMSHARP_GUEST_INITRD" "$work/share-layer.cpio.gz" >"$initrd"

    local start
    start=$(date +%s.%N)
    "$bin" run --kernel "$KVMSHARP_GUEST_KERNEL" --initrd "$initrd" --memory 512M --cpus 1 \
        --cmdline "console=ttyS0 reboot=k panic=-1 quiet kvmsharp.run=/share-check.sh kvmsharp.cmd=poweroff kvmsharp.sharetoken=$token" \
        --timeout "$timeout_s" --share "path=$rw,tag=hostrw" --share "path=$ro,tag=hostro,readonly=on" \
        >"$work/share-mount-read.out" 2>"$work/share-mount-read.err" </dev/null
    rc=$?
    seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    out=$work/share-mount-read.out
    sv() { tr -d '\r' <"$out" | sed -n "s/^$1=//p" | head -n 1; }
    for n in share-write-lands share-readonly share-no-escape share-backend-stopped; do
        cp "$out" "$work/$n.out"; cp "$work/share-mount-read.err" "$work/$n.err"
    done

    local ok=0
    [[ $rc == 0 && $(sv KVMSHARP-SHARE-MOUNT) == ok && $(sv KVMSHARP-SHARE-TYPE) == virtiofs && $(sv KVMSHARP-SHARE-READ) == "$hello" ]] && grep -q KVMSHARP-SHARE-DONE "$out" && ok=1
    report share-mount-read "$ok" "exit $rc in ${seconds}s; mount $(sv KVMSHARP-SHARE-MOUNT) ($(sv KVMSHARP-SHARE-TYPE)), read '$(sv KVMSHARP-SHARE-READ)' (host wrote '$hello')"

    ok=0
    [[ $(sv KVMSHARP-SHARE-WROTE) == "$token" && $(cat "$rw/from-guest.txt" 2>/dev/null) == "$token" ]] && ok=1
    report share-write-lands "$ok" "guest wrote '$(sv KVMSHARP-SHARE-WROTE)', host reads '$(cat "$rw/from-guest.txt" 2>/dev/null)'"

    ro_after=$(cd "$ro" && find . -printf '%p %s %m\n' | LC_ALL=C sort | sha256sum | cut -d' ' -f1)
    ok=0
    [[ $(sv KVMSHARP-RO-MOUNT) == ok && $(sv KVMSHARP-RO-READ) == "$(cat "$ro/ro.txt")" && $(sv KVMSHARP-RO-WRITE) == refused &&
        $(sv KVMSHARP-RO-MKDIR) == refused && $(sv KVMSHARP-RO-RM) == refused && $ro_before == "$ro_after" ]] && ok=1
    report share-readonly "$ok" "readonly=on: read '$(sv KVMSHARP-RO-READ)', write $(sv KVMSHARP-RO-WRITE), mkdir $(sv KVMSHARP-RO-MKDIR), rm $(sv KVMSHARP-RO-RM); host directory $([[ $ro_before == "$ro_after" ]] && echo unchanged || echo CHANGED)"

    local escapes secret_text
    secret_text=$(cat "$secret")
    escapes=$(tr -d '\r' <"$out" | grep -c '^KVMSHARP-ESCAPE=')
    ok=0
    [[ $escapes == 5 ]] && ! grep -aq "$secret_text" "$out" && ok=1
    report share-no-escape "$ok" "$escapes escape attempts through '..' and symlinks: $(tr -d '\r' <"$out" | sed -n 's/^KVMSHARP-ESCAPE=.* //p' | sort | uniq -c | tr -s ' \n' ' '); secret $(grep -aq "$secret_text" "$out" && echo LEAKED || echo 'never seen')"

    left=$(pgrep -f "kvmsharp-vfs-" | tr '\n' ' ')
    ok=0
    [[ -z $left ]] && ! ls -d "${TMPDIR:-/tmp}"/kvmsharp-vfs-* >/dev/null 2>&1 && ok=1
    report share-backend-stopped "$ok" "virtiofsd processes left: ${left:-none}; runtime directories left: $(ls -d "${TMPDIR:-/tmp}"/kvmsharp-vfs-* 2>/dev/null | wc -l)"

    umount "$base" 2>/dev/null || true
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    # Standalone: what boot-tests.sh would provide.
    # shellcheck source=tests/testbed/standalone.sh
    . "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/standalone.sh"
    testbed_standalone share-tests share_tests_main 'umount "$work/shares" 2>/dev/null'
else
    share_tests_main
fi
