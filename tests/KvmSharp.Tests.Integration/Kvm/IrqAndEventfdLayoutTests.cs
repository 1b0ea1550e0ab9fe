using System.Diagnostics;
using System.Text;
using KvmSharp.Kvm.Interop;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Kvm;

/// <summary>
/// The interop of KVM_IOEVENTFD, KVM_IRQFD, KVM_SET_GSI_ROUTING and KVM_SIGNAL_MSI against the system's
/// &lt;linux/kvm.h&gt;: the structs (the routing entry's union included) and ioctl numbers through the
/// shared generator of <see cref="StructLayoutTests"/>, and their flag and routing constants here.
/// </summary>
public sealed class IrqAndEventfdLayoutTests
{
    private static readonly string[] Structs =
        ["kvm_ioeventfd", "kvm_irqfd", "kvm_irq_routing", "kvm_irq_routing_entry", "kvm_irq_routing_irqchip", "kvm_irq_routing_msi", "kvm_msi"];

    [GccFact]
    public void Eventfd_and_routing_structs_flags_and_ioctls_match_the_system_kvm_header()
    {
        string gcc = GccFactAttribute.Gcc ?? throw new InvalidOperationException("gcc is not on PATH");
        var source = new StringBuilder(StructLayoutTests.GenerateAssertions(out int shared));
        foreach (string name in Structs)
            Assert.Contains($"\"KvmSharp: {name} size", source.ToString());
        Assert.Contains("offsetof(struct kvm_irq_routing_entry, u.msi) == 16", source.ToString());
        foreach (string ioctl in new[] { "KVM_IOEVENTFD", "KVM_IRQFD", "KVM_SET_GSI_ROUTING", "KVM_SIGNAL_MSI", "KVM_CAP_IRQ_ROUTING", "KVM_CAP_SIGNAL_MSI" })
            Assert.Contains($"_Static_assert({ioctl} == ", source.ToString());

        int own = 0;
        void Emit(string condition)
        {
            source.Append($"_Static_assert({condition}, \"KvmSharp: {condition}\");\n");
            own++;
        }
        Emit($"KVM_IOEVENTFD_FLAG_DATAMATCH == {KvmIoeventfdFlags.KVM_IOEVENTFD_FLAG_DATAMATCH}");
        Emit($"KVM_IOEVENTFD_FLAG_PIO == {KvmIoeventfdFlags.KVM_IOEVENTFD_FLAG_PIO}");
        Emit($"KVM_IOEVENTFD_FLAG_DEASSIGN == {KvmIoeventfdFlags.KVM_IOEVENTFD_FLAG_DEASSIGN}");
        Emit($"KVM_IRQFD_FLAG_DEASSIGN == {KvmIrqfdFlags.KVM_IRQFD_FLAG_DEASSIGN}");
        Emit($"KVM_IRQFD_FLAG_RESAMPLE == {KvmIrqfdFlags.KVM_IRQFD_FLAG_RESAMPLE}");
        Emit($"KVM_IRQ_ROUTING_IRQCHIP == {KvmIrqRouting.KVM_IRQ_ROUTING_IRQCHIP}");
        Emit($"KVM_IRQ_ROUTING_MSI == {KvmIrqRouting.KVM_IRQ_ROUTING_MSI}");
        Emit($"KVM_IRQCHIP_PIC_MASTER == {KvmIrqRouting.KVM_IRQCHIP_PIC_MASTER}");
        Emit($"KVM_IRQCHIP_PIC_SLAVE == {KvmIrqRouting.KVM_IRQCHIP_PIC_SLAVE}");
        Emit($"KVM_IRQCHIP_IOAPIC == {KvmIrqRouting.KVM_IRQCHIP_IOAPIC}");
        Emit($"KVM_IOAPIC_NUM_PINS == {KvmIrqRouting.KVM_IOAPIC_NUM_PINS}");

        string path = Path.Combine(Path.GetTempPath(), $"kvmsharp-irq-layout-{Environment.ProcessId}.c");
        File.WriteAllText(path, source.ToString());
        using var process = Process.Start(new ProcessStartInfo(gcc, ["-std=c11", "-fsyntax-only", "-Werror", path]) { RedirectStandardError = true })!;
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        Assert.True(process.ExitCode == 0, $"layout mismatch against <linux/kvm.h> ({shared} shared + {own} own assertions; see {path}):\n{errors}");
        File.Delete(path);
    }
}
