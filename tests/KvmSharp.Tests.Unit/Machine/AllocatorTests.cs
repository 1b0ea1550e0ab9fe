using CsCheck;
using KvmSharp.Vmm.Machine;
using KvmSharp.Vmm.Machine.Allocation;
using Xunit;

namespace KvmSharp.Tests.Unit.Machine;

public sealed class AllocatorTests
{
    [Fact]
    public void The_32_bit_window_lies_in_the_pci_hole_and_avoids_ecam_ioapic_lapic_and_the_tss_pages()
    {
        var resources = new MachineResources(64UL << 20);
        var fixedRanges = new[]
        {
            new AddressWindow(0xFEC0_0000, 0xFEC0_1000), // IOAPIC
            new AddressWindow(0xFEE0_0000, 0xFEE0_1000), // LAPIC
            new AddressWindow(0xFFFB_C000, 0xFFFC_0000), // identity map + TSS (VirtualMachine's addresses)
            resources.Ecam,
        };
        foreach (var window in resources.Mmio32.Windows)
        {
            Assert.True(window.Start >= VirtualMachine.LowRamLimit && window.End <= 1UL << 32, $"{window}");
            foreach (var fixedRange in fixedRanges) Assert.False(window.Overlaps(fixedRange), $"{window} overlaps {fixedRange}");
        }
        Assert.Equal(new AddressWindow(0xC000_0000, 0xE000_0000), resources.Mmio32.Windows[0]);
        Assert.Equal(MachineResources.EcamBase, resources.Ecam.Start);
    }

    [Theory]
    [InlineData(64UL << 20, 4UL << 30)]
    [InlineData(3UL << 30, 4UL << 30)]
    [InlineData((5UL << 30) + (256UL << 20), 7UL << 30)] // RAM ends at 6.25 GiB: the window starts at the next GiB
    public void The_64_bit_window_starts_at_the_first_gib_above_ram(ulong memory, ulong expectedStart)
    {
        var resources = new MachineResources(memory);
        Assert.Equal(expectedStart, resources.Mmio64.Window.Start);
        Assert.Equal(MachineResources.Mmio64Size, resources.Mmio64.Window.Size);
    }

    [Fact]
    public void Bars_are_naturally_aligned_and_never_overlap_until_the_window_is_exhausted()
    {
        var allocator = new AddressAllocator("test", new AddressWindow(0x1000, 0x9000), [(new AddressWindow(0x4000, 0x5000), "hole")]);
        var a = allocator.Allocate(0x1000, "a");
        var b = allocator.Allocate(0x2000, "b");          // 0x2000-aligned: 0x2000
        var c = allocator.Allocate(0x1000, "c");          // 0x4000 is reserved: 0x5000
        Assert.Equal(new AddressWindow(0x1000, 0x2000), a);
        Assert.Equal(new AddressWindow(0x2000, 0x4000), b);
        Assert.Equal(new AddressWindow(0x5000, 0x6000), c);
        Assert.Equal(new AddressWindow(0x6000, 0x8000), allocator.Allocate(0x2000, "d"));
        var error = Assert.Throws<ResourceExhaustedException>(() => allocator.Allocate(0x2000, "e"));
        Assert.Equal("test", error.Resource);
        Assert.Contains("'e'", error.Message);
        Assert.Equal(new AddressWindow(0x8000, 0x9000), allocator.Allocate(0x1000, "f")); // a smaller one still fits
        Assert.Throws<ResourceExhaustedException>(() => allocator.Allocate(1, "g"));
    }

    [Fact]
    public void A_claim_outside_the_free_windows_or_over_an_allocation_is_refused()
    {
        var allocator = new AddressAllocator("test", new AddressWindow(0x1000, 0x9000), [(new AddressWindow(0x4000, 0x5000), "hole")]);
        allocator.Claim(new AddressWindow(0x2000, 0x3000), "fixed");
        Assert.Contains("overlaps", Assert.Throws<ArgumentException>(() => allocator.Claim(new AddressWindow(0x2800, 0x3800), "late")).Message);
        Assert.Contains("not inside", Assert.Throws<ArgumentException>(() => allocator.Claim(new AddressWindow(0x3800, 0x4800), "hole")).Message);
        Assert.Equal(new AddressWindow(0x1000, 0x2000), allocator.Allocate(0x1000, "a"));
        Assert.Equal(new AddressWindow(0x3000, 0x4000), allocator.Allocate(0x1000, "b"));
        Assert.Throws<ArgumentOutOfRangeException>(() => allocator.Allocate(0x1000, "odd", alignment: 0x1800));
        Assert.Throws<ArgumentOutOfRangeException>(() => allocator.Allocate(0, "empty"));
    }

    [Fact]
    public void Random_requests_are_aligned_inside_the_free_windows_and_disjoint()
    {
        Gen.Select(Gen.Int[0, 16], Gen.Int[0, 3]).Array[1, 60].Sample(requests =>
        {
            var allocator = new AddressAllocator("prop", new AddressWindow(0x10_0000, 0x100_0000),
                [(new AddressWindow(0x40_0000, 0x48_0000), "r1"), (new AddressWindow(0x90_0000, 0x91_0000), "r2")]);
            var taken = new List<AddressWindow>();
            foreach (var (sizeShift, extraAlign) in requests)
            {
                ulong size = 0x1000UL << sizeShift;
                ulong alignment = size << extraAlign;
                try
                {
                    var range = allocator.Allocate(size, "x", alignment);
                    Assert.Equal(0UL, range.Start % alignment);
                    Assert.Equal(size, range.Size);
                    Assert.Contains(allocator.Windows, w => w.Contains(range));
                    Assert.DoesNotContain(taken, t => t.Overlaps(range));
                    taken.Add(range);
                }
                catch (ResourceExhaustedException)
                {
                    // Exhaustion is allowed; a wrong range is not.
                }
            }
        });
    }

    [Fact]
    public void Gsis_start_above_the_irqchip_pins_and_pci_slots_above_the_host_bridge_until_exhausted()
    {
        var resources = new MachineResources(64UL << 20, maxGsi: 26);
        Assert.Equal(24u, resources.Gsis.Allocate("a"));
        Assert.Equal(25u, resources.Gsis.Allocate("b"));
        Assert.Equal(26u, resources.Gsis.Allocate("c"));
        var gsi = Assert.Throws<ResourceExhaustedException>(() => resources.Gsis.Allocate("d"));
        Assert.Equal("gsi", gsi.Resource);
        Assert.Contains("'d'", gsi.Message);
        var slots = Enumerable.Range(0, 31).Select(i => resources.PciSlots.Allocate($"dev{i}")).ToList();
        Assert.Equal(Enumerable.Range(1, 31).Select(i => (uint)i), slots);
        Assert.Throws<ResourceExhaustedException>(() => resources.PciSlots.Allocate("one too many"));
        Assert.Equal(31u, resources.PciSlots.Allocated);
    }

    [Fact]
    public void Pci_ports_come_from_their_window()
    {
        var resources = new MachineResources(64UL << 20);
        var ports = resources.Ports.Allocate(0x40, "io bar");
        Assert.Equal(new AddressWindow(0xC000, 0xC040), ports);
        Assert.True(MachineResources.PciPortWindow.Contains(resources.Ports.Allocate(0x100, "another")));
    }
}
