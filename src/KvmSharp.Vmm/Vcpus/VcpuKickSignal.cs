using System.Runtime.InteropServices;
using Tmds.Linux;
using static Tmds.Linux.LibC;

namespace KvmSharp.Vmm.Vcpus;

/// <summary>
/// The signal that knocks a vCPU thread out of KVM_RUN (which then returns EINTR). Its handler is
/// native code that only returns, because managed code must not run in signal context; the signal
/// is a real-time one the .NET runtime does not use (it takes SIGRTMIN itself). SA_RESTART keeps
/// the runtime's own syscalls on that thread from seeing EINTR.
/// </summary>
internal static unsafe partial class VcpuKickSignal
{
    private const int SA_RESTART = 0x10000000;
    private static readonly Lazy<int> Installed = new(Install, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The signal number in use (installed on first use).</summary>
    public static int Number => Installed.Value;

    /// <summary>The calling thread's kernel thread id, the target for <see cref="Kick"/>.</summary>
    public static int CurrentThreadId() => (int)syscall(SYS_gettid);

    /// <summary>Send the kick to one thread of this process; 0 or -errno.</summary>
    public static int Kick(int threadId)
    {
        long result = syscall(SYS_tgkill, Environment.ProcessId, threadId, Number);
        return result == 0 ? 0 : -Marshal.GetLastPInvokeError();
    }

    private const long SYS_gettid = 186;
    private const long SYS_tgkill = 234;

    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number);

    [LibraryImport("libc", SetLastError = true)]
    private static partial long syscall(long number, long a, long b, long c);

    private static int Install()
    {
        void* handler = CreateReturnOnlyHandler();
        // Search downward from SIGRTMAX for a signal nobody has claimed, leaving SIGRTMIN to the runtime.
        for (int signal = SIGRTMAX - 2; signal > SIGRTMIN + 2; signal--)
        {
            sigaction existing;
            if (LibC.sigaction(signal, null, &existing) != 0) continue;
            if (existing.sa_handler != null) continue;

            sigaction action = default;
            action.sa_handler = handler;
            action.sa_flags = SA_RESTART;
            sigemptyset(&action.sa_mask);
            if (LibC.sigaction(signal, &action, null) == 0) return signal;
        }
        throw new InvalidOperationException("no free real-time signal to kick vCPU threads out of KVM_RUN");
    }

    // A page holding one `ret`: the smallest async-signal-safe handler there is (mapped W^X: MemoryDenyWriteExecute).
    private static void* CreateReturnOnlyHandler() => ExecutableStub.Map([0xC3], "kick-handler");
}
