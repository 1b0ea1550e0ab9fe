using Iced.Intel;
using KvmSharp.Devices.Serial;
using KvmSharp.Devices.Virtio.Rng;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Devices;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Machine.Allocation;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Seams;

/// <summary>The PCI root and a virtio-pci function attached by attach steps, seen by a guest through 0xCF8/0xCFC and ECAM.</summary>
public sealed class PciWiringTests
{
    private const uint HostBridgeIds = 0x0008_1B36;      // 1b36:0008
    private const uint VirtioRngIds = 0x1044_1AF4;       // 1af4:1044 (0x1040 + entropy)

    // Reads the ids of 00:00.0 and 00:01.0 through configuration mechanism #1, and of 00:01.0 and the
    // empty slot 00:02.0 through ECAM; exits 0x11 when all four are as expected, else 0x20 + which failed.
    private static readonly Lazy<GuestImage> Guest = new(() => TestGuest.LongMode(a =>
    {
        void Conf1(int device, uint expected, byte failure)
        {
            var ok = a.CreateLabel();
            a.mov(dx, 0xCF8);
            a.mov(eax, 0x8000_0000u | (uint)(device << 11));
            a.@out(dx, eax);
            a.mov(dx, 0xCFC);
            a.@in(eax, dx);
            a.cmp(eax, expected);
            a.je(ok);
            TestGuest.ExitWith(a, failure);
            a.Label(ref ok);
        }
        void Ecam(int device, uint expected, byte failure)
        {
            var ok = a.CreateLabel();
            a.mov(rbx, MachineResources.EcamBase + ((ulong)device << 15));
            a.mov(eax, __dword_ptr[rbx]);
            a.cmp(eax, expected);
            a.je(ok);
            TestGuest.ExitWith(a, failure);
            a.Label(ref ok);
        }
        Conf1(0, HostBridgeIds, 0x20);
        Conf1(1, VirtioRngIds, 0x21);
        Ecam(1, VirtioRngIds, 0x22);
        Ecam(2, 0xFFFF_FFFF, 0x23);
        TestGuest.ExitWith(a, 0x11);
    }, "pci-probe"));

    [KvmFact]
    public void A_guest_finds_the_host_bridge_and_a_virtio_rng_through_conf1_and_ecam()
    {
        using var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = 16UL << 20,
            Image = Guest.Value,
            Irqchip = true,
            SerialSink = new CapturingSerialSink(),
            Devices = [PciAttachments.Root, PciAttachments.Virtio("virtio-rng", _ => new VirtioRng())],
        });
        Assert.NotNull(vm.Devices.PciRoot);
        Assert.Contains(vm.MmioBus.Ranges, r => r.Name == "pci-ecam" && r.BaseAddress == MachineResources.EcamBase);
        Assert.Contains(vm.PortBus.Ranges, r => r.Name == "pci-conf1" && r.BaseAddress == 0xCF8);
        // The rng's BAR came from the machine's 64-bit window.
        var bar = Assert.Single(vm.Devices.Resources.Mmio64.Allocations);
        Assert.True(vm.Devices.Resources.Mmio64.Window.Contains(bar.Range));

        var outcome = TestGuest.RunToEnd(vm, TimeSpan.FromSeconds(30));
        Assert.Equal(VmOutcome.GuestExit(0x11), outcome);
    }

    [KvmFact]
    public void A_virtio_function_without_the_root_fails_creation_naming_it()
    {
        var error = Assert.Throws<DeviceAttachException>(() => VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = 4UL << 20,
            Image = Guest.Value,
            Irqchip = true,
            SerialSink = new CapturingSerialSink(),
            Devices = [PciAttachments.Virtio("virtio-rng", _ => new VirtioRng())],
        }));
        Assert.Equal("virtio-rng", error.Device);
        Assert.Contains("needs the PCI root attached first", error.Message);
    }
}
