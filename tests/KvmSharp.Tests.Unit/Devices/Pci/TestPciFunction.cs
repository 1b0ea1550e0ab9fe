using KvmSharp.Devices.Pci;

namespace KvmSharp.Tests.Unit.Devices.Pci;

/// <summary>A plain endpoint with the BARs a test asks for, each served by a <see cref="RecordingBusDevice"/>.</summary>
internal sealed class TestPciFunction : PciFunction
{
    public TestPciFunction(string name = "test", params (int Index, ulong Size, bool Is64Bit)[] bars)
        : base(name, vendorId: 0x1234, deviceId: 0x5678, revisionId: 3, classCode: 0x0b4000, subsystemVendorId: 0xabcd, subsystemId: 0xef01)
    {
        foreach (var (index, size, is64Bit) in bars)
        {
            var region = new RecordingBusDevice((byte)(0x10 + index));
            Regions[index] = region;
            AddBar(new PciBar(index, size, is64Bit, prefetchable: is64Bit, region, $"bar{index}"));
        }
    }

    public RecordingBusDevice?[] Regions { get; } = new RecordingBusDevice?[6];

    /// <summary>Add a vendor capability of <paramref name="length"/> bytes whose body bytes are <paramref name="fill"/>.</summary>
    public int AddVendorCapability(int length, byte fill)
    {
        var capability = new byte[length];
        Array.Fill(capability, fill);
        capability[0] = PciRegs.PCI_CAP_ID_VNDR;
        capability[2] = (byte)length;
        return AddCapability(capability);
    }

    public int AddMsix(MsixTable table, int barIndex, uint tableOffset, uint pbaOffset) => AddMsixCapability(table, barIndex, tableOffset, pbaOffset);
}
