namespace KvmSharp.Vmm.Trackers.Remote;

/// <summary>
/// One record of the event ring as a tracker reads it: a guest write (<see cref="TrackerRingLayout.KindWrite"/>),
/// a removed region (Gpa is its first gfn, Aux its pages) or a gap (Aux events were lost before it).
/// </summary>
public sealed record TrackerEvent(uint Kind, ulong Seq, int Vcpu, int AddressSpace, ushort Source, ulong Gpa, ulong Aux, byte[] Bytes)
{
    /// <summary>One line, as `kvmsharp track` prints it.</summary>
    public string Format() => Kind switch
    {
        TrackerRingLayout.KindWrite => $"write seq={Seq} vcpu={Vcpu} as={AddressSpace} gpa=0x{Gpa:x} len={Bytes.Length} bytes={Convert.ToHexString(Bytes).ToLowerInvariant()} source={(Source == TrackerRingLayout.SourceDevice ? "device" : "vcpu")}",
        TrackerRingLayout.KindRemoveRegion => $"remove-region seq={Seq} gfn=0x{Gpa:x} pages={Aux}",
        TrackerRingLayout.KindGap => $"gap seq={Seq} lost={Aux}",
        _ => $"unknown kind={Kind} seq={Seq}",
    };
}
