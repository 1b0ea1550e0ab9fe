using System.Runtime.InteropServices;

namespace KvmSharp.Devices.Virtio.Rng;

/// <summary>The host's getrandom(2): the kernel's CSPRNG, never blocking once it is seeded (Tmds.LibC does not bind it).</summary>
internal static unsafe partial class GetRandom
{
    [LibraryImport("libc", EntryPoint = "getrandom", SetLastError = true)]
    private static partial nint getrandom(void* buffer, nuint length, uint flags);

    /// <summary>Fill <c>[buffer, buffer + length)</c>; false when the kernel refused (the errno is lost; callers report the buffer unused).</summary>
    public static bool TryFill(byte* buffer, nuint length)
    {
        while (length > 0)
        {
            nint got = getrandom(buffer, length, 0);
            if (got < 0)
            {
                if (Marshal.GetLastPInvokeError() == Tmds.Linux.LibC.EINTR)
                {
                    continue;
                }

                return false;
            }

            buffer += got;
            length -= (nuint)got;
        }

        return true;
    }
}
