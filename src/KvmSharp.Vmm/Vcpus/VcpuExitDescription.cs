using KvmSharp.Kvm.Interop;

namespace KvmSharp.Vmm.Vcpus;

/// <summary>A readable account of an exit that ends the VM (cold path; allocates freely).</summary>
public static unsafe class VcpuExitDescription
{
    public static string Describe(kvm_run* run)
    {
        var reason = (KvmExitReason)run->exit_reason;
        byte* union = (byte*)run + kvm_run.ExitUnionOffset;
        switch (reason)
        {
            case KvmExitReason.KVM_EXIT_SHUTDOWN:
                return "KVM_EXIT_SHUTDOWN: the guest triple-faulted (or asked for a shutdown the CPU cannot survive)";
            case KvmExitReason.KVM_EXIT_DIRTY_RING_FULL:
                return "KVM_EXIT_DIRTY_RING_FULL: the dirty ring stays full with nothing to harvest (the kernel overran it: entries were lost)";
            case KvmExitReason.KVM_EXIT_FAIL_ENTRY:
            {
                var fail = (kvm_run_fail_entry*)union;
                return $"KVM_EXIT_FAIL_ENTRY: hardware entry failure reason 0x{fail->hardware_entry_failure_reason:x} on cpu {fail->cpu}";
            }
            case KvmExitReason.KVM_EXIT_INTERNAL_ERROR:
            {
                var error = (kvm_run_internal*)union;
                string suberror = error->suberror switch
                {
                    1 => "KVM_INTERNAL_ERROR_EMULATION",
                    2 => "KVM_INTERNAL_ERROR_SIMUL_EX",
                    3 => "KVM_INTERNAL_ERROR_DELIVERY_EV",
                    4 => "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON",
                    _ => $"suberror {error->suberror}",
                };
                var data = new List<string>();
                for (int i = 0; i < Math.Min(error->ndata, 16u); i++) data.Add($"0x{error->data[i]:x}");
                return $"KVM_EXIT_INTERNAL_ERROR: {suberror}" + (data.Count > 0 ? $" data [{string.Join(", ", data)}]" : "");
            }
            case KvmExitReason.KVM_EXIT_SYSTEM_EVENT:
            {
                var ev = (kvm_run_system_event*)union;
                string type = ev->type switch
                {
                    KvmSystemEventType.KVM_SYSTEM_EVENT_SHUTDOWN => "shutdown",
                    KvmSystemEventType.KVM_SYSTEM_EVENT_RESET => "reset",
                    KvmSystemEventType.KVM_SYSTEM_EVENT_CRASH => "crash",
                    _ => $"type {ev->type}",
                };
                return $"KVM_EXIT_SYSTEM_EVENT: {type}";
            }
            default:
                return Enum.IsDefined(reason) ? $"{reason}: not handled by KvmSharp" : $"exit reason {(uint)reason}: unknown to KvmSharp";
        }
    }
}
