#!/usr/bin/env bash
# Virtio checks of issue 8, run INSIDE the nested testbed: Debian's kernel with the initramfs of
# scripts/guest/fetch-guest.sh boots into the ext4 root of scripts/guest/make-rootfs.sh on a
# virtio disk, in two boots (each L2 boot costs ~15 s under TCG, so every check rides on one):
#   boot 1 (disk-write): root on vda read-write, a read-only vdb; the guest writes a token and
#     4 MiB of random bytes, syncs, lists its disks, tries to write to vdb, reads /dev/hwrng,
#     then syncs, remounts / read-only and powers off. Checked from the host: the files in the
#     image (debugfs), e2fsck -fn clean, vdb's image byte-identical (sha256).
#   boot 2 (disk-readback): the same root, read-only (ro), console on hvc0 (--console virtio); the
#     guest reads both files back and writes a second token to /dev/hvc0 only, which must show on
#     the VMM's stdout, and a third to the named port org.kvmsharp.test (--port ...,path=FILE),
#     which must land in FILE. Checked: the contents, e2fsck -fn, and the image unchanged by the ro boot.
#     (Should the VMM refuse --console virtio, the read-back boots again without it.)
# Report lines as boot-tests.sh prints them (PASS:/FAIL: NAME (DETAIL)).
#
# boot-tests.sh sources this file (it provides report, $work, $bin and $timeout_s). Run alone it
# prints its own "disk-tests: N passed, N failed":
#   KVMSHARP_GUEST_KERNEL=... KVMSHARP_GUEST_INITRD=... [KVMSHARP_GUEST_ROOTFS=...] tests/testbed/disk-tests.sh
# KVMSHARP_GUEST_ROOTFS is make-rootfs.sh's image (a template: it is copied, never booted); without
# it make-rootfs.sh is asked (works offline once cached). KVMSHARP_DISK_VMM=qemu runs the same
# boots under QEMU (virtio-blk-pci, virtio-rng-pci, virtconsole) instead of KvmSharp, to check the
# guest side and these checks themselves; KVMSHARP_DISK_QEMU_ACCEL=tcg runs that QEMU without KVM.
# Needs debugfs and e2fsck (e2fsprogs).

disk_tests_main() {
    local repo_dir vmm token token2 rootfs img ro_img ro_sha out ok sha
    repo_dir=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
    vmm=${KVMSHARP_DISK_VMM:-kvmsharp}

    # A check that has no run of its own shows the output of the boot it was read from.
    same_output() { cp "$work/$1.out" "$work/$2.out" 2>/dev/null; cp "$work/$1.err" "$work/$2.err" 2>/dev/null; }
    # The value after KEY= in NAME's console output (first occurrence, carriage returns dropped).
    value() { tr -d '\r' <"$work/$1.out" | sed -n "s/^$2=//p" | head -n 1; }

    # disk_boot NAME CMDLINE [--drive SPEC]... [--console virtio]: one VM; output in $work/NAME.{out,err},
    # status in $rc, wall seconds in $seconds.
    disk_boot() {
        local name=$1 cmdline="reboot=k panic=-1 quiet $2" start
        shift 2
        local -a cmd
        if [[ $vmm == qemu ]]; then
            local -a q=() spec=()
            local file ro serial console=0 i=0 part
            while (($#)); do
                case $1 in
                    --drive)
                        file='' ro='' serial=''
                        IFS=, read -r -a spec <<<"$2"
                        for part in "${spec[@]}"; do
                            case $part in
                                file=*) file=${part#file=} ;;
                                readonly=on) ro=,readonly=on ;;
                                serial=*) serial=,serial=${part#serial=} ;;
                            esac
                        done
                        q+=(-drive "if=none,id=d$i,format=raw,file=$file$ro" -device "virtio-blk-pci,drive=d$i$serial")
                        i=$((i + 1))
                        shift 2
                        ;;
                    --console) console=1; shift 2 ;;
                    --port)
                        # name=NAME,path=FILE only, as this file uses it.
                        local pname=${2#name=} ppath=${2#*,path=}
                        pname=${pname%%,*}
                        q+=(-chardev "file,id=p$i,path=$ppath" -device "virtserialport,chardev=p$i,name=$pname")
                        i=$((i + 1)) console=$((console | 2))
                        shift 2
                        ;;
                    *) echo "disk-tests: unknown VMM argument $1" >&2; return 2 ;;
                esac
            done
            local accel=${KVMSHARP_DISK_QEMU_ACCEL:-kvm} cpu=host
            [[ $accel == kvm ]] || cpu=max
            # shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
            cmd=(timeout "$timeout_s" qemu-system-x86_64 -M pc -accel "$accel" -cpu "$cpu" -m 512 -smp 1
                -nodefaults -no-user-config -display none -no-reboot
                -chardev stdio,id=c0,mux=on -serial chardev:c0 -device virtio-rng-pci)
            # shellcheck disable=SC2054 # the commas belong to QEMU's option syntax
            ((console)) && cmd+=(-device virtio-serial-pci)
            ((console & 1)) && cmd+=(-device virtconsole,chardev=c0)
            cmd+=("${q[@]}")
            cmd+=(-kernel "$KVMSHARP_GUEST_KERNEL" -initrd "$KVMSHARP_GUEST_INITRD" -append "$cmdline")
        else
            cmd=("$bin" run --kernel "$KVMSHARP_GUEST_KERNEL" --initrd "$KVMSHARP_GUEST_INITRD" --memory 512M
                --cpus 1 --cmdline "$cmdline" --timeout "$timeout_s" "$@")
        fi
        start=$(date +%s.%N)
        "${cmd[@]}" >"$work/$name.out" 2>"$work/$name.err" </dev/null
        rc=$?
        seconds=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
    }

    rootfs=${KVMSHARP_GUEST_ROOTFS:-}
    if [[ -z $rootfs ]]; then
        rootfs=$("$repo_dir/scripts/guest/make-rootfs.sh" 2>"$work/make-rootfs.err" | sed -n 's/^ROOTFS=//p')
    fi
    if [[ -z $rootfs || ! -f $rootfs ]] || ! command -v debugfs >/dev/null || ! command -v e2fsck >/dev/null; then
        echo "no root image (KVMSHARP_GUEST_ROOTFS='${KVMSHARP_GUEST_ROOTFS:-}'), or no debugfs/e2fsck" >"$work/disk-write.err"
        cat "$work/make-rootfs.err" >>"$work/disk-write.err" 2>/dev/null
        report disk-write 0 "no root image or no e2fsprogs: run scripts/guest/make-rootfs.sh, apt-get install e2fsprogs"
        return 0
    fi
    img=$work/root.img
    ro_img=$work/ro.img
    cp --sparse=always "$rootfs" "$img" && cp --sparse=always "$rootfs" "$ro_img" || {
        report disk-write 0 "cannot copy $rootfs into $work"
        return 0
    }
    ro_sha=$(sha256sum <"$ro_img" | cut -d' ' -f1)
    token=written-$(date +%s)-$RANDOM
    token2=hvc0-$(date +%s)-$RANDOM

    # ---- boot 1: write, two drives, read-only drive, hwrng -------------------------------------
    disk_boot disk-write "console=ttyS0 root=/dev/vda rw kvmsharp.steps=write,disks,readonly,rng kvmsharp.token=$token kvmsharp.rodev=vdb kvmsharp.cmd=poweroff" \
        --drive "file=$img,serial=kvmsharp-root" --drive "file=$ro_img,readonly=on,serial=kvmsharp-ro"
    out=$work/disk-write.out
    local wrote_big
    wrote_big=$(value disk-write KVMSHARP-WROTE-BIG)
    ok=0
    [[ $rc == 0 ]] && [[ $(value disk-write KVMSHARP-ROOT) == "/dev/vda ext4 rw" ]] &&
        [[ $(value disk-write KVMSHARP-WROTE) == "$token" && -n $wrote_big ]] &&
        ! grep -q 'KVMSHARP-STEP-FAILED=write' "$out" && grep -q KVMSHARP-STEPS-DONE "$out" && ok=1
    report disk-write "$ok" "root on vda rw, wrote a token and 4 MiB, powered off: exit $rc in ${seconds}s; guest saw root '$(value disk-write KVMSHARP-ROOT)'"

    # The written files, read from the image on the host side (debugfs does not replay a journal: the
    # guest's remount read-only before poweroff must have written everything home).
    local host_token host_big
    host_token=$(debugfs -R "cat /kvmsharp/token" "$img" 2>/dev/null)
    host_big=$(debugfs -R "dump /kvmsharp/big $work/big.host" "$img" >/dev/null 2>&1 && sha256sum <"$work/big.host" | cut -d' ' -f1)
    same_output disk-write disk-host-sees-write
    ok=0
    [[ $host_token == "$token" && -n $host_big && $host_big == "$wrote_big" ]] && ok=1
    report disk-host-sees-write "$ok" "debugfs: token '$host_token', big file sha256 ${host_big:0:16}… (guest wrote ${wrote_big:0:16}…)"

    e2fsck -fn "$img" >"$work/disk-fsck-after-write.out" 2>&1
    local fsck_rc=$?
    cp "$work/disk-fsck-after-write.out" "$work/disk-fsck-after-write.err"
    ok=0; [[ $fsck_rc == 0 ]] && ok=1
    report disk-fsck-after-write "$ok" "e2fsck -fn exit $fsck_rc: $(tail -n 1 "$work/disk-fsck-after-write.out")"

    same_output disk-write disk-two-drives
    local vda vdb sectors
    sectors=$(($(stat -c %s "$img") / 512))
    vda=$(grep -a '^KVMSHARP-DISK=vda ' "$out" | tr -d '\r' | head -n 1)
    vdb=$(grep -a '^KVMSHARP-DISK=vdb ' "$out" | tr -d '\r' | head -n 1)
    ok=0
    [[ $vda == *" serial=kvmsharp-root ro=0 sectors=$sectors" && $vdb == *" serial=kvmsharp-ro ro=1 sectors=$sectors" ]] && ok=1
    report disk-two-drives "$ok" "/sys/block: ${vda#KVMSHARP-DISK=}; ${vdb#KVMSHARP-DISK=}"

    same_output disk-write disk-readonly
    sha=$(sha256sum <"$ro_img" | cut -d' ' -f1)
    ok=0
    [[ $(value disk-write KVMSHARP-RO-FLAG) == 1 && $(value disk-write KVMSHARP-RO-WRITE) == refused* &&
        $(value disk-write KVMSHARP-RO-READ) == ok && $(value disk-write KVMSHARP-RO-REMOUNT) == refused &&
        $sha == "$ro_sha" ]] && ok=1
    report disk-readonly "$ok" "vdb readonly=on: ro flag $(value disk-write KVMSHARP-RO-FLAG), write $(value disk-write KVMSHARP-RO-WRITE | cut -d' ' -f1), mounted ro and read $(value disk-write KVMSHARP-RO-READ), remount rw $(value disk-write KVMSHARP-RO-REMOUNT); image sha256 $([[ $sha == "$ro_sha" ]] && echo unchanged || echo CHANGED)"

    same_output disk-write hwrng
    local rng hex
    rng=$(value disk-write KVMSHARP-HWRNG)
    hex=${rng##*hex=}
    ok=0
    [[ $rng == "virtio_rng."*" bytes=64 hex="* && ${#hex} == 128 && $hex =~ [1-9a-f] ]] && ok=1
    report hwrng "$ok" "/dev/hwrng: ${rng:0:40}…"

    # ---- boot 2: read back on a read-only root, console on hvc0 ---------------------------------
    local before_sha
    before_sha=$(sha256sum <"$img" | cut -d' ' -f1)
    disk_boot disk-readback "console=ttyS0 console=hvc0 root=/dev/vda ro rootfstype=ext4 kvmsharp.steps=read,hvc,consoles,port kvmsharp.token=$token2 kvmsharp.cmd=poweroff" \
        --drive "file=$img,serial=kvmsharp-root" --console virtio --port "name=org.kvmsharp.test,path=$work/port.out"
    cp "$work/disk-readback.out" "$work/console-hvc0.out"
    cp "$work/disk-readback.err" "$work/console-hvc0.err"
    if [[ $rc == 2 && ! -s $work/disk-readback.out ]]; then
        # The VMM refused --console virtio before booting: read back without it, so the disk
        # checks do not hang on the console's (console-hvc0 below fails with the VMM's message).
        disk_boot disk-readback "console=ttyS0 root=/dev/vda ro rootfstype=ext4 kvmsharp.steps=read kvmsharp.cmd=poweroff" \
            --drive "file=$img,serial=kvmsharp-root"
    fi
    sha=$(sha256sum <"$img" | cut -d' ' -f1)
    ok=0
    [[ $rc == 0 && $(value disk-readback KVMSHARP-ROOT) == "/dev/vda ext4 ro" && $(value disk-readback KVMSHARP-READ) == "$token" &&
        -n $wrote_big && $(value disk-readback KVMSHARP-READ-BIG) == "$wrote_big" && $sha == "$before_sha" ]] && ok=1
    report disk-readback "$ok" "second boot, root ro: exit $rc in ${seconds}s; read '$(value disk-readback KVMSHARP-READ)', big file $([[ -n $wrote_big && $(value disk-readback KVMSHARP-READ-BIG) == "$wrote_big" ]] && echo matches || echo DIFFERS); image $([[ $sha == "$before_sha" ]] && echo unchanged || echo CHANGED) by the ro boot"

    e2fsck -fn "$img" >"$work/disk-fsck-after-readback.out" 2>&1
    fsck_rc=$?
    cp "$work/disk-fsck-after-readback.out" "$work/disk-fsck-after-readback.err"
    ok=0; [[ $fsck_rc == 0 ]] && ok=1
    report disk-fsck-after-readback "$ok" "e2fsck -fn exit $fsck_rc"

    ok=0
    grep -aq "KVMSHARP-HVC0=$token2" "$work/console-hvc0.out" && ok=1
    report console-hvc0 "$ok" "--console virtio: marker written to /dev/hvc0 $([[ $ok == 1 ]] && echo seen || echo 'NOT seen') on the VMM's stdout; guest consoles: $(value console-hvc0 KVMSHARP-CONSOLES)"

    cp "$work/disk-readback.out" "$work/console-port.out"
    cp "$work/disk-readback.err" "$work/console-port.err"
    ok=0
    grep -aq "KVMSHARP-PORT=$token2" "$work/port.out" 2>/dev/null && ok=1
    report console-port "$ok" "--port name=org.kvmsharp.test,path=FILE: guest wrote to $(value console-port KVMSHARP-PORT-DEV); the file $([[ $ok == 1 ]] && echo 'has the token' || echo "lacks it ($(head -c 80 "$work/port.out" 2>/dev/null | tr -c '[:print:]' .))")"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    # Standalone: what boot-tests.sh would provide.
    set -uo pipefail
    : "${KVMSHARP_GUEST_KERNEL:?set KVMSHARP_GUEST_KERNEL (scripts/guest/fetch-guest.sh prints it)}"
    : "${KVMSHARP_GUEST_INITRD:?set KVMSHARP_GUEST_INITRD}"
    repo=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")/../.." && pwd)
    bin=${KVMSHARP_AOT_BIN:-$repo/artifacts/aot/kvmsharp}
    if [[ ${KVMSHARP_DISK_VMM:-kvmsharp} != qemu && ! -x $bin ]]; then
        echo "disk-tests: no NativeAOT kvmsharp at $bin (or set KVMSHARP_DISK_VMM=qemu)" >&2
        exit 2
    fi
    timeout_s=${KVMSHARP_BOOT_TIMEOUT:-300}
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    passed=0 failed=0
    report() { # NAME OK DETAIL
        if [ "$2" = 1 ]; then
            echo "PASS: $1 ($3)"
            passed=$((passed + 1))
        else
            echo "FAIL: $1 ($3)"
            echo "----- stdout (tail) -----"; tail -n 30 "$work/$1.out" 2>/dev/null
            echo "----- stderr (tail) -----"; tail -n 40 "$work/$1.err" 2>/dev/null
            failed=$((failed + 1))
        fi
    }
    disk_tests_main
    echo "disk-tests: $passed passed, $failed failed"
    [ "$failed" = 0 ]
else
    disk_tests_main
fi
