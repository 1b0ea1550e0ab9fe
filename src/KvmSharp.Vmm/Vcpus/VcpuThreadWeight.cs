using System.Runtime.InteropServices;

namespace KvmSharp.Vmm.Vcpus;

/// <summary>
/// vCPU threads run at a lower scheduling weight (a higher nice value) than the VMM's own threads. A spinning guest
/// keeps every vCPU thread runnable all the time; at equal weight, the thread that handles a stop signal, the one that
/// kicks the vCPUs and the console writer would each wait a whole round of hundreds of vCPU slices for a CPU. Among
/// themselves the vCPUs keep equal weights. Only VMs with more vCPUs than the host has CPUs do this: a vCPU at
/// nice +10 also yields to every other process on a busy host, which a VM that fits the host must not.
/// </summary>
internal static partial class VcpuThreadWeight
{
    /// <summary>How much nicer than the VMM a vCPU thread is (weight 1024 for the VMM, 110 for a vCPU at +10).</summary>
    public const int NiceIncrement = 10;

    private const int PRIO_PROCESS = 0;
    private const int MaxNice = 19;

    /// <summary>Lower the calling thread's weight (Linux applies PRIO_PROCESS with who 0 to the calling thread only).</summary>
    /// <returns>The thread's nice value now, or null if the kernel refused (then it runs at the VMM's weight).</returns>
    public static int? LowerCurrentThread()
    {
        Marshal.SetLastPInvokeError(0);
        int current = getpriority(PRIO_PROCESS, 0);
        if (current == -1 && Marshal.GetLastPInvokeError() != 0) return null;
        int lowered = Math.Min(MaxNice, current + NiceIncrement);
        return setpriority(PRIO_PROCESS, 0, lowered) == 0 ? lowered : null;
    }

    [LibraryImport("libc", SetLastError = true)]
    private static partial int getpriority(int which, uint who);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int setpriority(int which, uint who, int prio);
}
