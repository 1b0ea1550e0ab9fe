using System.Buffers.Binary;
using System.Runtime.InteropServices;
using KvmSharp.Kvm.Interop;

namespace KvmSharp.Tests.Unit.Vcpus;

/// <summary>
/// A zeroed native stand-in for the mmap'd kvm_run page, filled at the byte offsets of the kernel's
/// uapi (include/uapi/linux/kvm.h), not through KvmSharp's structs, so the structs are checked too.
/// </summary>
internal sealed unsafe class KvmRunBuffer : IDisposable
{
    public const int Length = 4096;

    /// <summary>Where IO data goes by default: just past struct kvm_run (2352 bytes).</summary>
    public const int DefaultDataOffset = 0xa00;

    // struct kvm_run
    private const int ExitReasonOffset = 8;
    private const int UnionOffset = 32;

    // union member io: __u8 direction; __u8 size; __u16 port; __u32 count; __u64 data_offset;
    private const int IoDirection = UnionOffset + 0;
    private const int IoSize = UnionOffset + 1;
    private const int IoPort = UnionOffset + 2;
    private const int IoCount = UnionOffset + 4;
    private const int IoDataOffset = UnionOffset + 8;

    // union member mmio: __u64 phys_addr; __u8 data[8]; __u32 len; __u8 is_write;
    private const int MmioPhysAddr = UnionOffset + 0;
    public const int MmioData = UnionOffset + 8;
    private const int MmioLen = UnionOffset + 16;
    private const int MmioIsWrite = UnionOffset + 20;

    private byte* _memory;

    public KvmRunBuffer() => _memory = (byte*)NativeMemory.AllocZeroed(Length);

    public kvm_run* Run => (kvm_run*)_memory;

    public Span<byte> Bytes => new(_memory, Length);

    public void SetExitReason(KvmExitReason reason) => SetExitReason((uint)reason);

    public void SetExitReason(uint reason) => BinaryPrimitives.WriteUInt32LittleEndian(Bytes[ExitReasonOffset..], reason);

    public void SetIo(byte direction, byte size, ushort port, uint count, ulong dataOffset = DefaultDataOffset)
    {
        SetExitReason(KvmExitReason.KVM_EXIT_IO);
        Bytes[IoDirection] = direction;
        Bytes[IoSize] = size;
        BinaryPrimitives.WriteUInt16LittleEndian(Bytes[IoPort..], port);
        BinaryPrimitives.WriteUInt32LittleEndian(Bytes[IoCount..], count);
        BinaryPrimitives.WriteUInt64LittleEndian(Bytes[IoDataOffset..], dataOffset);
    }

    public void SetMmio(ulong gpa, uint length, bool isWrite, ReadOnlySpan<byte> data = default)
    {
        SetExitReason(KvmExitReason.KVM_EXIT_MMIO);
        BinaryPrimitives.WriteUInt64LittleEndian(Bytes[MmioPhysAddr..], gpa);
        data.CopyTo(Bytes.Slice(MmioData, 8));
        BinaryPrimitives.WriteUInt32LittleEndian(Bytes[MmioLen..], length);
        Bytes[MmioIsWrite] = isWrite ? (byte)1 : (byte)0;
    }

    /// <summary>The 8-byte mmio.data array.</summary>
    public Span<byte> MmioDataBytes => Bytes.Slice(MmioData, 8);

    public Span<byte> Data(int length, int offset = DefaultDataOffset) => Bytes.Slice(offset, length);

    public void WriteUnion<T>(int offsetInUnion, T value) where T : unmanaged =>
        MemoryMarshal.Write(Bytes[(UnionOffset + offsetInUnion)..], in value);

    public void Dispose()
    {
        if (_memory is null) return;
        NativeMemory.Free(_memory);
        _memory = null;
    }
}
