using KvmSharp.Vmm.Vcpus;

namespace KvmSharp.Tests.Unit.Vcpus;

/// <summary>Claims MMIO accesses inside one guest-physical page, answers reads with a fixed byte, and records what it saw.</summary>
internal sealed class ClaimingMmioInterceptor(ulong claimedPage, byte readValue = 0xc3) : IMmioInterceptor
{
    public int Calls { get; private set; }
    public int Claimed { get; private set; }
    public int LastVcpuId { get; private set; } = -1;
    public ulong LastGpa { get; private set; }
    public int LastLength { get; private set; }
    public bool LastWasWrite { get; private set; }
    public ulong LastWrittenBytes { get; private set; }

    public bool TryHandle(int vcpuId, int addressSpace, ulong gpa, Span<byte> data, bool isWrite)
    {
        Calls++;
        LastVcpuId = vcpuId;
        LastGpa = gpa;
        LastLength = data.Length;
        LastWasWrite = isWrite;
        if ((gpa & ~0xfffUL) != claimedPage) return false;

        Claimed++;
        if (isWrite)
        {
            ulong bytes = 0;
            for (int i = data.Length - 1; i >= 0; i--) bytes = (bytes << 8) | data[i];
            LastWrittenBytes = bytes;
        }
        else
        {
            data.Fill(readValue);
        }
        return true;
    }
}
