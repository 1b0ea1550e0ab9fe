using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Devices.Events;

/// <summary>
/// A Linux eventfd (EFD_CLOEXEC | EFD_NONBLOCK): a 64-bit counter that <see cref="Signal"/> adds to and
/// <see cref="TryConsume"/> drains. KVM signals one for an ioeventfd and reads one for an irqfd; the
/// event loop watches them. Signal and consume are allocation-free.
/// </summary>
public sealed unsafe class EventFd : FileDescriptorHandle
{
    private EventFd(int fd) : base(fd)
    {
    }

    /// <summary>A new eventfd with the counter at zero.</summary>
    public static EventFd Create()
    {
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0) throw new HostCallException("eventfd", errno);
        return new EventFd(fd);
    }

    /// <summary>Add one to the counter (wakes a reader; for an irqfd, injects the interrupt).</summary>
    public void Signal()
    {
        bool added = false;
        try
        {
            DangerousAddRef(ref added);
            ulong one = 1;
            // EAGAIN only when the counter would pass 2^64-2, i.e. nobody has read it for ages: the reader is woken anyway.
            write((int)handle, &one, sizeof(ulong));
        }
        finally
        {
            if (added) DangerousRelease();
        }
    }

    /// <summary>Read and reset the counter: true with how many signals arrived since the last read, false when none did.</summary>
    public bool TryConsume(out ulong count)
    {
        bool added = false;
        try
        {
            DangerousAddRef(ref added);
            ulong value = 0;
            ssize_t result = read((int)handle, &value, sizeof(ulong));
            count = result == sizeof(ulong) ? value : 0;
            return result == sizeof(ulong);
        }
        finally
        {
            if (added) DangerousRelease();
        }
    }
}
