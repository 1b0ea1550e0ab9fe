using System.Diagnostics;
using System.Reflection;
using System.Text;
using KvmSharp.Devices.Pci;
using KvmSharp.Devices.Virtio.Transport;
using KvmSharp.Tests.Integration.Infrastructure;
using Xunit;

namespace KvmSharp.Tests.Integration.Kvm;

/// <summary>
/// Proves the PCI and virtio-pci constants the device model writes into configuration space and BARs
/// against &lt;linux/pci_regs.h&gt; and &lt;linux/virtio_pci.h&gt;: a generated C file of static_asserts, compiled
/// by gcc, the same way <see cref="StructLayoutTests"/> proves the KVM interop. Every public constant named
/// like a kernel macro is asserted equal to it; the structure layouts are asserted with offsetof/sizeof.
/// </summary>
public sealed class PciLayoutTests
{
    // Struct fields the transport lays out byte by byte, with the constant that gives each offset.
    private static readonly (string Struct, string Field, int Offset)[] Fields =
    [
        ("virtio_pci_cap", "cap_vndr", VirtioPciRegs.VIRTIO_PCI_CAP_VNDR),
        ("virtio_pci_cap", "cap_next", VirtioPciRegs.VIRTIO_PCI_CAP_NEXT),
        ("virtio_pci_cap", "cap_len", VirtioPciRegs.VIRTIO_PCI_CAP_LEN),
        ("virtio_pci_cap", "cfg_type", VirtioPciRegs.VIRTIO_PCI_CAP_CFG_TYPE),
        ("virtio_pci_cap", "bar", VirtioPciRegs.VIRTIO_PCI_CAP_BAR),
        ("virtio_pci_cap", "offset", VirtioPciRegs.VIRTIO_PCI_CAP_OFFSET),
        ("virtio_pci_cap", "length", VirtioPciRegs.VIRTIO_PCI_CAP_LENGTH),
        ("virtio_pci_notify_cap", "notify_off_multiplier", VirtioPciRegs.VIRTIO_PCI_NOTIFY_CAP_MULT),
        ("virtio_pci_common_cfg", "device_feature_select", VirtioPciRegs.VIRTIO_PCI_COMMON_DFSELECT),
        ("virtio_pci_common_cfg", "device_feature", VirtioPciRegs.VIRTIO_PCI_COMMON_DF),
        ("virtio_pci_common_cfg", "guest_feature_select", VirtioPciRegs.VIRTIO_PCI_COMMON_GFSELECT),
        ("virtio_pci_common_cfg", "guest_feature", VirtioPciRegs.VIRTIO_PCI_COMMON_GF),
        ("virtio_pci_common_cfg", "msix_config", VirtioPciRegs.VIRTIO_PCI_COMMON_MSIX),
        ("virtio_pci_common_cfg", "num_queues", VirtioPciRegs.VIRTIO_PCI_COMMON_NUMQ),
        ("virtio_pci_common_cfg", "device_status", VirtioPciRegs.VIRTIO_PCI_COMMON_STATUS),
        ("virtio_pci_common_cfg", "config_generation", VirtioPciRegs.VIRTIO_PCI_COMMON_CFGGENERATION),
        ("virtio_pci_common_cfg", "queue_select", VirtioPciRegs.VIRTIO_PCI_COMMON_Q_SELECT),
        ("virtio_pci_common_cfg", "queue_size", VirtioPciRegs.VIRTIO_PCI_COMMON_Q_SIZE),
        ("virtio_pci_common_cfg", "queue_msix_vector", VirtioPciRegs.VIRTIO_PCI_COMMON_Q_MSIX),
        ("virtio_pci_common_cfg", "queue_enable", VirtioPciRegs.VIRTIO_PCI_COMMON_Q_ENABLE),
        ("virtio_pci_common_cfg", "queue_notify_off", VirtioPciRegs.VIRTIO_PCI_COMMON_Q_NOFF),
        ("virtio_pci_common_cfg", "queue_desc_lo", VirtioPciRegs.VIRTIO_PCI_COMMON_Q_DESCLO),
        ("virtio_pci_common_cfg", "queue_desc_hi", VirtioPciRegs.VIRTIO_PCI_COMMON_Q_DESCHI),
        ("virtio_pci_common_cfg", "queue_avail_lo", VirtioPciRegs.VIRTIO_PCI_COMMON_Q_AVAILLO),
        ("virtio_pci_common_cfg", "queue_avail_hi", VirtioPciRegs.VIRTIO_PCI_COMMON_Q_AVAILHI),
        ("virtio_pci_common_cfg", "queue_used_lo", VirtioPciRegs.VIRTIO_PCI_COMMON_Q_USEDLO),
        ("virtio_pci_common_cfg", "queue_used_hi", VirtioPciRegs.VIRTIO_PCI_COMMON_Q_USEDHI),
    ];

    private static readonly (string Struct, int Size)[] Sizes =
    [
        ("virtio_pci_cap", VirtioPciRegs.StructVirtioPciCapSize),
        ("virtio_pci_notify_cap", VirtioPciRegs.StructVirtioPciNotifyCapSize),
        ("virtio_pci_common_cfg", VirtioPciRegs.StructVirtioPciCommonCfgSize),
    ];

    [GccFact]
    public void Generated_static_asserts_compile_against_the_system_pci_and_virtio_headers()
    {
        string source = GenerateAssertions(out int count);
        Assert.True(count > 100, $"only {count} assertions were generated");
        var (exitCode, errors, path) = Compile(source, "kvmsharp-pci-layout");
        Assert.True(exitCode == 0, $"layout mismatch against <linux/pci_regs.h> / <linux/virtio_pci.h> (see {path}):\n{errors}");
        File.Delete(path);
    }

    [GccFact]
    public void A_wrong_offset_is_caught_by_the_generator()
    {
        // The check can fail: the same generator with one offset off by two must not compile.
        string source = GenerateAssertions(out _).Replace(
            $"offsetof(struct virtio_pci_common_cfg, queue_select) == {VirtioPciRegs.VIRTIO_PCI_COMMON_Q_SELECT}",
            $"offsetof(struct virtio_pci_common_cfg, queue_select) == {VirtioPciRegs.VIRTIO_PCI_COMMON_Q_SELECT + 2}",
            StringComparison.Ordinal);
        var (exitCode, errors, path) = Compile(source, "kvmsharp-pci-layout-bad");
        File.Delete(path);
        Assert.NotEqual(0, exitCode);
        Assert.Contains("queue_select", errors);
    }

    internal static string GenerateAssertions(out int count)
    {
        var c = new StringBuilder("#include <stddef.h>\n#include <linux/pci_regs.h>\n#include <linux/virtio_pci.h>\n\n");
        count = 0;
        foreach (var type in new[] { typeof(PciRegs), typeof(VirtioPciRegs) })
        {
            foreach (var field in type.GetFields(BindingFlags.Public | BindingFlags.Static).Where(f => f.IsLiteral && IsKernelMacroName(f.Name)))
            {
                long value = Convert.ToInt64(field.GetRawConstantValue());
                Emit(c, ref count, $"{field.Name} == {value}", $"{type.Name}.{field.Name} = {value}");
            }
        }

        foreach (var (structName, field, offset) in Fields)
            Emit(c, ref count, $"offsetof(struct {structName}, {field}) == {offset}", $"{structName}.{field} at {offset}");
        foreach (var (structName, size) in Sizes)
            Emit(c, ref count, $"sizeof(struct {structName}) == {size}", $"sizeof {structName} = {size}");
        Emit(c, ref count, "offsetof(struct virtio_pci_notify_cap, cap) == 0", "virtio_pci_notify_cap starts with a virtio_pci_cap");
        return c.ToString();
    }

    private static bool IsKernelMacroName(string name) =>
        (name.StartsWith("PCI_", StringComparison.Ordinal) || name.StartsWith("VIRTIO_", StringComparison.Ordinal)) && name == name.ToUpperInvariant();

    private static void Emit(StringBuilder c, ref int count, string condition, string what)
    {
        c.Append($"_Static_assert({condition}, \"KvmSharp: {what}\");\n");
        count++;
    }

    private static (int ExitCode, string Errors, string Path) Compile(string source, string name)
    {
        string gcc = GccFactAttribute.Gcc ?? throw new InvalidOperationException("gcc is not on PATH");
        string path = Path.Combine(Path.GetTempPath(), $"{name}-{Environment.ProcessId}.c");
        File.WriteAllText(path, source);
        using var process = Process.Start(new ProcessStartInfo(gcc, ["-std=c11", "-fsyntax-only", "-Werror", path]) { RedirectStandardError = true, RedirectStandardOutput = true })!;
        string errors = process.StandardError.ReadToEnd();
        process.WaitForExit();
        return (process.ExitCode, errors, path);
    }
}
