using KvmSharp.Kvm;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Vmm.Vcpus;

/// <summary>
/// A few bytes of machine code mapped executable without ever being writable and executable, or becoming
/// executable later: the bytes go into a memfd with write(2), and the memfd is mapped PROT_READ|PROT_EXEC. So the
/// VMM runs under systemd's MemoryDenyWriteExecute=yes and the kernel's PR_SET_MDWE, which refuse a W+X mapping
/// and an mprotect adding PROT_EXEC (the way such stubs are usually made).
/// </summary>
internal static unsafe class ExecutableStub
{
    private const uint MFD_CLOEXEC = 1;
    private const int PageSize = 4096;

    /// <summary>Map <paramref name="code"/> (position-independent, at most a page) executable; the mapping lives as long as the process.</summary>
    public static void* Map(ReadOnlySpan<byte> code, string name)
    {
        if (code.Length is 0 or > PageSize) throw new ArgumentOutOfRangeException(nameof(code), code.Length, "a stub is 1 to 4096 bytes");
        int fd;
        byte[] nameBytes = System.Text.Encoding.ASCII.GetBytes("kvmsharp-" + name + "\0");
        fixed (byte* n = nameBytes) fd = memfd_create(n, MFD_CLOEXEC);
        if (fd < 0) throw new KvmException("memfd_create", errno, $"the {name} stub");
        try
        {
            if (ftruncate(fd, PageSize) != 0) throw new KvmException("ftruncate", errno, $"the {name} stub's memfd");
            fixed (byte* bytes = code)
            {
                long written = 0;
                while (written < code.Length)
                {
                    long result = pwrite(fd, bytes + written, (size_t)(uint)(code.Length - written), (off_t)written);
                    if (result < 0)
                    {
                        int error = errno;
                        if (error == EINTR) continue;
                        throw new KvmException("pwrite", error, $"the {name} stub's memfd");
                    }
                    written += result;
                }
            }
            void* page = mmap(null, PageSize, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, 0);
            if (page == MAP_FAILED) throw new KvmException("mmap", errno, $"the {name} stub, PROT_READ|PROT_EXEC");
            return page;
        }
        finally
        {
            close(fd); // the mapping keeps the memfd's pages
        }
    }
}
