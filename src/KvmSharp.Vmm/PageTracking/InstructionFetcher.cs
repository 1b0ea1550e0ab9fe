using Iced.Intel;
using KvmSharp.Kvm;
using KvmSharp.Kvm.Interop;
using KvmSharp.Memory.Memslots;
using KvmSharp.Vmm.Boot;

namespace KvmSharp.Vmm.PageTracking;

/// <summary>
/// Decodes the instruction a vCPU is about to execute (RIP on its first byte), forward from RIP:
/// the bytes are read through KVM_TRANSLATE of the guest's own page tables. One per vCPU; reused,
/// so decoding allocates nothing.
/// </summary>
internal sealed unsafe class InstructionFetcher
{
    private const int MaxInstructionLength = 15;
    private readonly BufferReader _reader = new();
    private readonly Decoder _decoder16, _decoder32, _decoder64;

    public InstructionFetcher()
    {
        _decoder16 = Decoder.Create(16, _reader);
        _decoder32 = Decoder.Create(32, _reader);
        _decoder64 = Decoder.Create(64, _reader);
    }

    public static int BitnessOf(in kvm_sregs sregs) => sregs.cs.l != 0 && (sregs.efer & X86.EFER_LMA) != 0 ? 64 : sregs.cs.db != 0 ? 32 : 16;

    public static ulong LinearRip(in kvm_regs regs, in kvm_sregs sregs, int bitness) =>
        bitness == 64 ? regs.rip : (sregs.cs.@base + regs.rip) & 0xFFFF_FFFF;

    /// <summary>Decode at RIP; false when the code is not mapped or not RAM.</summary>
    public bool TryDecodeAtRip(KvmVcpu vcpu, MemslotSnapshot memslots, int addressSpace, in kvm_regs regs, in kvm_sregs sregs, out Instruction instruction)
    {
        instruction = default;
        int bitness = BitnessOf(sregs);
        ulong linear = LinearRip(regs, sregs, bitness);
        int length = 0;
        while (length < MaxInstructionLength)
        {
            ulong at = linear + (ulong)length;
            if (!vcpu.TryTranslate(at, out ulong physical, out _)) break;
            if (!memslots.TryFindByGfn(addressSpace, physical >> Memslot.PageShift, out var slot)) break;
            int chunk = (int)Math.Min(MaxInstructionLength - length, 4096 - (long)(physical & 0xFFF));
            new ReadOnlySpan<byte>((void*)slot.HostAddressOf(physical), chunk).CopyTo(_reader.Bytes.AsSpan(length));
            length += chunk;
        }
        if (length == 0) return false;
        return TryDecode(_reader.Bytes.AsSpan(0, length), bitness, regs.rip, out instruction);
    }

    /// <summary>Decode given bytes (an emulation-failure exit carries them).</summary>
    public bool TryDecode(ReadOnlySpan<byte> bytes, int bitness, ulong ip, out Instruction instruction)
    {
        if (!bytes.Overlaps(_reader.Bytes)) bytes[..Math.Min(bytes.Length, MaxInstructionLength)].CopyTo(_reader.Bytes);
        _reader.Reset(Math.Min(bytes.Length, MaxInstructionLength));
        var decoder = bitness switch { 64 => _decoder64, 32 => _decoder32, _ => _decoder16 };
        decoder.IP = ip;
        decoder.Decode(out instruction);
        return !instruction.IsInvalid;
    }

    private sealed class BufferReader : CodeReader
    {
        public readonly byte[] Bytes = new byte[MaxInstructionLength];
        private int _position, _length;

        public void Reset(int length)
        {
            _position = 0;
            _length = length;
        }

        public override int ReadByte() => _position < _length ? Bytes[_position++] : -1;
    }
}
