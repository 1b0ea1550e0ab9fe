using System.IO.MemoryMappedFiles;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Memory.Regions;
using KvmSharp.Tests.Integration.Infrastructure;
using KvmSharp.Vmm.Machine;
using Xunit;
using static Iced.Intel.AssemblerRegisters;

namespace KvmSharp.Tests.Integration.Memslots;

public sealed class DirtyLogAndMemfdTests
{
    private const ulong LoggedGpa = 0x0800_0000;
    private const ushort LoggedSlot = 3;

    [KvmFact]
    public void Dirty_logging_reports_exactly_the_pages_the_guest_wrote_and_survives_being_toggled()
    {
        var image = TestGuest.LongMode(a =>
        {
            a.mov(rbx, LoggedGpa);
            a.mov(__qword_ptr[rbx + 3 * 4096], 1);
            a.mov(__qword_ptr[rbx + 7 * 4096 + 8], 2);
            a.mov(rax, __qword_ptr[rbx + 5 * 4096]); // a read does not dirty a page
            TestGuest.ExitWith(a, 0);
        });
        using var vm = TestGuest.Create(image, memory: 4UL << 20);
        using var region = GuestMemoryRegion.CreateAnonymous(16 * 4096, "logged");
        vm.Memslots.Apply(MemslotRequest.Create(LoggedSlot, LoggedGpa, 16 * 4096, region.HostAddress));
        var toggled = vm.Memslots.Apply(MemslotRequest.Create(LoggedSlot, LoggedGpa, 16 * 4096, region.HostAddress, KvmMemFlags.KVM_MEM_LOG_DIRTY_PAGES));
        Assert.Equal(MemslotChangeKind.FlagsOnly, toggled.Kind);

        Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));

        ulong[] bitmap = vm.Memslots.GetDirtyLog(LoggedSlot);
        Assert.Equal((1UL << 3) | (1UL << 7), bitmap[0]);
        // KVM_GET_DIRTY_LOG clears the log.
        Assert.Equal(0UL, vm.Memslots.GetDirtyLog(LoggedSlot)[0]);
        Assert.Equal(1UL, BitConverter.ToUInt64(region.AsSpan(3 * 4096, 8)));

        vm.Memslots.Apply(MemslotRequest.Create(LoggedSlot, LoggedGpa, 16 * 4096, region.HostAddress));
        var error = Assert.Throws<MemslotRefusedException>(() => vm.Memslots.GetDirtyLog(LoggedSlot));
        Assert.Equal(Errno.ENOENT, error.Errno);
    }

    [KvmFact]
    public void Memfd_backed_ram_is_visible_to_another_mapping_of_the_same_file()
    {
        var image = TestGuest.LongMode(a =>
        {
            a.mov(rbx, 0x300000UL);
            a.mov(rax, 0x0DDBA11_CAFEF00DUL);
            a.mov(__qword_ptr[rbx], rax);
            TestGuest.ExitWith(a, 0);
        });
        using var vm = VirtualMachine.Create(new VmConfig
        {
            MemoryBytes = 4UL << 20,
            Image = image,
            SerialSink = new Devices.Serial.CapturingSerialSink(),
            MemfdBacking = true,
        });
        var ram = vm.RamRegions[0];
        Assert.True(ram.FileDescriptor >= 0);

        Assert.Equal(VmOutcome.GuestExit(0), TestGuest.RunToEnd(vm));

        // What another process would do with the fd: map /proc/<pid>/fd/N and read the guest's write.
        using var file = MemoryMappedFile.CreateFromFile($"/proc/self/fd/{ram.FileDescriptor}", FileMode.Open, null, 0, MemoryMappedFileAccess.Read);
        using var view = file.CreateViewAccessor(0x300000, 8, MemoryMappedFileAccess.Read);
        Assert.Equal(0x0DDBA11_CAFEF00DUL, view.ReadUInt64(0));
    }
}
