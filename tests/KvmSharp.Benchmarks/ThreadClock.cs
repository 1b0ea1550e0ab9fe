using System.Runtime.InteropServices;

namespace KvmSharp.Benchmarks;

/// <summary>
/// CPU time of the calling thread (CLOCK_THREAD_CPUTIME_ID), in ns: the time the vCPU thread actually ran,
/// which leaves out the time it sat preempted by other work on a busy host. Read twice per run, never per exit.
/// </summary>
internal static unsafe partial class ThreadClock
{
    private const int CLOCK_THREAD_CPUTIME_ID = 3;

    public static long NowNs()
    {
        Timespec ts;
        if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return 0;
        return ts.Seconds * 1_000_000_000L + ts.Nanoseconds;
    }

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }

    [LibraryImport("libc")]
    private static partial int clock_gettime(int clock, Timespec* ts);
}
