using System.Runtime.InteropServices;
using System.Text;
using KvmSharp.Devices.Serial;
using static Tmds.Linux.LibC;

namespace KvmSharp.Terminal;

/// <summary>
/// Opens where the guest's serial console goes (stdout or a file) as a sink that never blocks the VM: a stalled
/// reader costs dropped bytes, not a stuck vCPU, and a FIFO without a reader is opened on the writer thread.
/// </summary>
public static unsafe class SerialOutput
{
    /// <summary>How long a byte without a newline (a prompt) may wait before it is written.</summary>
    public static readonly TimeSpan MaxFlushDelay = TimeSpan.FromMilliseconds(20);

    /// <summary>Bytes held for a slow reader before new output is dropped and counted.</summary>
    public const int BufferBytes = 256 * 1024;

    /// <summary>The sink for <c>--serial</c>: "stdout" or a path (created or truncated; a FIFO waits for its reader).</summary>
    /// <param name="serial">"stdout" or a path.</param>
    /// <param name="writeAfter">Output is held (in the sink's buffer, the VM never waits) until this completes.</param>
    /// <exception cref="IOException">The file cannot be opened; the message names it and the reason.</exception>
    public static StreamSerialSink Open(string serial, Task? writeAfter = null)
    {
        if (serial == "stdout")
        {
            // fd 1 itself, not Console's stream: that one would initialise .NET's terminal handling.
            var stdout = new FileDescriptorStream(1, ownsDescriptor: false);
            return writeAfter is null
                ? new StreamSerialSink(stdout, leaveOpen: true, bufferSize: BufferBytes, maxFlushDelay: MaxFlushDelay)
                : new StreamSerialSink(() => After(writeAfter, stdout), BufferBytes, MaxFlushDelay);
        }

        // O_NONBLOCK makes opening a FIFO without a reader fail with ENXIO instead of waiting for one.
        int fd = OpenPath(serial, O_NONBLOCK);
        if (fd == -ENXIO)
        {
            return new StreamSerialSink(() => After(writeAfter, ToStream(ThrowIfFailed(OpenPath(serial, 0), serial))), BufferBytes, MaxFlushDelay);
        }

        ThrowIfFailed(fd, serial);
        int flags = fcntl(fd, F_GETFL);
        if (flags >= 0) fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
        return writeAfter is null
            ? new StreamSerialSink(ToStream(fd), bufferSize: BufferBytes, maxFlushDelay: MaxFlushDelay)
            : new StreamSerialSink(() => After(writeAfter, ToStream(fd)), BufferBytes, MaxFlushDelay);
    }

    // Runs on the sink's writer thread, which holds the output until then.
    private static Stream After(Task? writeAfter, Stream stream)
    {
        writeAfter?.Wait();
        return stream;
    }

    private static int OpenPath(string path, int extraFlags)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(path + "\0");
        fixed (byte* p = bytes)
        {
            int fd;
            do
            {
                fd = open(p, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOCTTY | extraFlags, 0b110_100_100);
            }
            while (fd < 0 && errno == EINTR);

            return fd >= 0 ? fd : -errno;
        }
    }

    private static int ThrowIfFailed(int fdOrErrno, string path)
    {
        if (fdOrErrno >= 0) return fdOrErrno;
        int error = -fdOrErrno;
        throw new IOException($"cannot open the serial output '{path}' (--serial): {Marshal.GetPInvokeErrorMessage(error)} (errno {error})");
    }

    private static FileDescriptorStream ToStream(int fd) => new(fd, ownsDescriptor: true);
}
