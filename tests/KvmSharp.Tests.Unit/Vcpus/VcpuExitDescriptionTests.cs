using KvmSharp.Kvm.Interop;
using KvmSharp.Vmm.Vcpus;
using Xunit;

namespace KvmSharp.Tests.Unit.Vcpus;

/// <summary>VcpuExitDescription: the text a fatal exit is reported with, read from the kvm_run union.</summary>
public sealed unsafe class VcpuExitDescriptionTests : IDisposable
{
    private readonly KvmRunBuffer _run = new();

    public void Dispose() => _run.Dispose();

    private string Describe() => VcpuExitDescription.Describe(_run.Run);

    [Fact]
    public void Shutdown_mentions_a_triple_fault()
    {
        _run.SetExitReason(KvmExitReason.KVM_EXIT_SHUTDOWN);

        string text = Describe();

        Assert.StartsWith("KVM_EXIT_SHUTDOWN", text, StringComparison.Ordinal);
        Assert.Contains("triple-fault", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0x8000_0021UL, 0u)]
    [InlineData(0x7UL, 3u)]
    [InlineData(0xffff_ffff_ffff_ffffUL, 255u)]
    public void Fail_entry_gives_the_hardware_reason_in_hex_and_the_cpu(ulong hardwareReason, uint cpu)
    {
        _run.SetExitReason(KvmExitReason.KVM_EXIT_FAIL_ENTRY);
        _run.WriteUnion(0, hardwareReason); // __u64 hardware_entry_failure_reason
        _run.WriteUnion(8, cpu);            // __u32 cpu

        string text = Describe();

        Assert.StartsWith("KVM_EXIT_FAIL_ENTRY", text, StringComparison.Ordinal);
        Assert.Contains($"reason 0x{hardwareReason:x} ", text, StringComparison.Ordinal);
        Assert.EndsWith($"cpu {cpu}", text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(1u, "KVM_INTERNAL_ERROR_EMULATION")]
    [InlineData(2u, "KVM_INTERNAL_ERROR_SIMUL_EX")]
    [InlineData(3u, "KVM_INTERNAL_ERROR_DELIVERY_EV")]
    [InlineData(4u, "KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON")]
    [InlineData(9u, "suberror 9")]
    public void Internal_error_names_its_suberror(uint suberror, string name)
    {
        _run.SetExitReason(KvmExitReason.KVM_EXIT_INTERNAL_ERROR);
        _run.WriteUnion(0, suberror); // __u32 suberror

        Assert.Equal($"KVM_EXIT_INTERNAL_ERROR: {name}", Describe());
    }

    [Fact]
    public void Internal_error_lists_its_data_words()
    {
        _run.SetExitReason(KvmExitReason.KVM_EXIT_INTERNAL_ERROR);
        _run.WriteUnion(0, 1u);                       // suberror
        _run.WriteUnion(4, 3u);                       // ndata
        _run.WriteUnion(8, 0x1UL);                    // data[0]
        _run.WriteUnion(16, 0xdead_beefUL);           // data[1]
        _run.WriteUnion(24, 0xffff_8000_0000_0000UL); // data[2]
        _run.WriteUnion(32, 0x42UL);                  // data[3]: beyond ndata

        Assert.Equal("KVM_EXIT_INTERNAL_ERROR: KVM_INTERNAL_ERROR_EMULATION data [0x1, 0xdeadbeef, 0xffff800000000000]", Describe());
    }

    [Fact]
    public void Internal_error_reads_at_most_16_data_words()
    {
        _run.SetExitReason(KvmExitReason.KVM_EXIT_INTERNAL_ERROR);
        _run.WriteUnion(0, 2u);
        _run.WriteUnion(4, 1000u);
        for (int i = 0; i < 17; i++) _run.WriteUnion(8 + (8 * i), (ulong)(0x100 + i));

        string text = Describe();

        Assert.Contains("0x10f]", text, StringComparison.Ordinal);
        Assert.DoesNotContain("0x110", text, StringComparison.Ordinal);
        Assert.Equal(16, text.Split(", ").Length);
    }

    [Theory]
    [InlineData(KvmSystemEventType.KVM_SYSTEM_EVENT_SHUTDOWN, "shutdown")]
    [InlineData(KvmSystemEventType.KVM_SYSTEM_EVENT_RESET, "reset")]
    [InlineData(KvmSystemEventType.KVM_SYSTEM_EVENT_CRASH, "crash")]
    [InlineData(7u, "type 7")]
    public void System_event_names_its_type(uint type, string name)
    {
        _run.SetExitReason(KvmExitReason.KVM_EXIT_SYSTEM_EVENT);
        _run.WriteUnion(0, type); // __u32 type

        Assert.Equal($"KVM_EXIT_SYSTEM_EVENT: {name}", Describe());
    }

    [Theory]
    [InlineData(KvmExitReason.KVM_EXIT_DEBUG)]
    [InlineData(KvmExitReason.KVM_EXIT_HYPERCALL)]
    [InlineData(KvmExitReason.KVM_EXIT_MEMORY_FAULT)]
    public void Known_but_unhandled_exit_is_named(KvmExitReason reason)
    {
        _run.SetExitReason(reason);

        Assert.Equal($"{reason}: not handled by KvmSharp", Describe());
    }

    [Fact]
    public void Unknown_exit_gives_its_number()
    {
        _run.SetExitReason(12345u);

        Assert.Equal("exit reason 12345: unknown to KvmSharp", Describe());
    }
}
