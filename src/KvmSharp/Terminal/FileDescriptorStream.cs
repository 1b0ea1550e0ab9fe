using System.Runtime.InteropServices;
using static Tmds.Linux.LibC;

namespace KvmSharp.Terminal;

/// <summary>
/// A write-only stream over a file descriptor with plain write(2): unlike FileStream it keeps no file position of its
/// own, so stdout shared with stderr (<c>&gt; log 2&gt;&amp;1</c>) is appended to, not overwritten, and unlike .NET's
/// console stream it leaves the terminal alone. A failing write throws an <see cref="IOException"/> whose HResult is
/// the errno (32 = EPIPE when the reader went away).
/// </summary>
public sealed unsafe class FileDescriptorStream(int fd, bool ownsDescriptor) : Stream
{
    private int _fd = fd;

    public override bool CanRead => false;
    public override bool CanSeek => false;
    public override bool CanWrite => _fd >= 0;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

    public override void Write(ReadOnlySpan<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_fd < 0, this);
        fixed (byte* start = buffer)
        {
            int done = 0;
            while (done < buffer.Length)
            {
                long written = write(_fd, start + done, buffer.Length - done);
                if (written >= 0)
                {
                    done += (int)written;
                    continue;
                }
                int error = errno;
                if (error == EINTR) continue;
                throw new IOException($"write to fd {_fd} failed: {Marshal.GetPInvokeErrorMessage(error)} (errno {error})", error);
            }
        }
    }

    public override void Flush()
    {
    }

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        int fd = Interlocked.Exchange(ref _fd, -1);
        if (fd >= 0 && ownsDescriptor) close(fd);
        base.Dispose(disposing);
    }
}
