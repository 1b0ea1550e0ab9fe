using System.Text;

namespace KvmSharp.Exec;

/// <summary>
/// The extra initrd layer of `kvmsharp exec`: /kvmsharp-exec (run by fetch-guest.sh's /init through
/// kvmsharp.run=), /kvmsharp-request (<see cref="ExecRequest"/>) and /kvmsharp-mounts (the --rw shares).
/// </summary>
public static class ExecGuestInit
{
    public const string RootTag = "kvmsharp-root";
    public const string WritableTagPrefix = "kvmsharp-rw";
    public const string StdoutPort = "org.kvmsharp.stdout", StderrPort = "org.kvmsharp.stderr", StatusPort = "org.kvmsharp.status";
    public const string Cmdline = "console=ttyS0 reboot=k panic=-1 quiet kvmsharp.run=/kvmsharp-exec kvmsharp.cmd=poweroff";

    // Runs in the initramfs's busybox; the command runs under the host root's own /bin/sh in the chroot.
    public const string InitScript = """
        #!/bin/sh
        # kvmsharp exec, guest side (KvmSharp's src/KvmSharp/Exec/ExecGuestInit.cs).
        out= err= status=
        for p in /sys/class/virtio-ports/*; do
            [ -r "$p/name" ] || continue
            case $(cat "$p/name") in
                org.kvmsharp.stdout) out=/dev/${p##*/} ;;
                org.kvmsharp.stderr) err=/dev/${p##*/} ;;
                org.kvmsharp.status) status=/dev/${p##*/} ;;
            esac
        done
        fail() { echo "kvmsharp-exec: $*"; [ -n "$err" ] && echo "kvmsharp exec (guest): $*" >"$err"; exit 1; }
        [ -n "$out" ] && [ -n "$err" ] && [ -n "$status" ] || fail "missing virtio-console ports (out=$out err=$err status=$status)"
        for m in fuse virtiofs overlay; do modprobe "$m" 2>/dev/null; done
        r=/mnt/kvmsharp-root
        mkdir -p /mnt/host /mnt/layer "$r"
        mount -t virtiofs -o ro kvmsharp-root /mnt/host || fail "cannot mount the host's / (virtio-fs tag kvmsharp-root)"
        mount -t tmpfs -o mode=0755 kvmsharp-layer /mnt/layer
        mkdir -p /mnt/layer/upper /mnt/layer/work
        if ! mount -t overlay -o lowerdir=/mnt/host,upperdir=/mnt/layer/upper,workdir=/mnt/layer/work kvmsharp-overlay "$r"; then
            echo "kvmsharp-exec: no overlay; the host's / stays read-only"
            mount --bind /mnt/host "$r" || fail "cannot bind the host's /"
        fi
        mount -t proc proc "$r/proc" || fail "cannot mount /proc"
        mount -t sysfs sysfs "$r/sys"
        mount -t devtmpfs devtmpfs "$r/dev" || fail "cannot mount /dev"
        mkdir -p "$r/dev/pts" "$r/dev/shm"
        mount -t devpts devpts "$r/dev/pts"
        mount -t tmpfs tmpfs "$r/dev/shm"
        rw_share() { mount -t virtiofs "$1" "$r$2" || fail "cannot mount $2 (virtio-fs tag $1)"; }
        . /kvmsharp-mounts
        env -i chroot "$r" /bin/sh -c "$(cat /kvmsharp-request)" kvmsharp-exec </dev/null >"$out" 2>"$err"
        echo "$?" >"$status"
        sync
        """;

    /// <summary>The layer (newc cpio, uncompressed).</summary>
    public static byte[] Layer(string request, IReadOnlyList<string> writableDirectories)
    {
        var mounts = new StringBuilder("# --rw shares: tag, guest path\n");
        for (int i = 0; i < writableDirectories.Count; i++)
            mounts.Append("rw_share ").Append(WritableTag(i)).Append(' ').Append(ExecRequest.Quote(writableDirectories[i])).Append('\n');
        var cpio = new NewcCpioWriter();
        cpio.AddFile("kvmsharp-exec", InitScript.ReplaceLineEndings("\n") + "\n", permissions: 0x1ED);
        cpio.AddFile("kvmsharp-request", request);
        cpio.AddFile("kvmsharp-mounts", mounts.ToString());
        return cpio.Finish();
    }

    public static string WritableTag(int index) => $"{WritableTagPrefix}{index}";

    /// <summary>Write <paramref name="baseInitrd"/>, zero padding to 4 bytes (Linux looks for the next archive's magic at 4-byte offsets and skips zeros), then <paramref name="layer"/>.</summary>
    public static void WriteCombined(Stream output, string baseInitrd, ReadOnlySpan<byte> layer)
    {
        long length;
        using (var input = File.OpenRead(baseInitrd))
        {
            input.CopyTo(output);
            length = input.Length;
        }
        for (long pad = (4 - length % 4) % 4; pad > 0; pad--) output.WriteByte(0);
        output.Write(layer);
    }
}
