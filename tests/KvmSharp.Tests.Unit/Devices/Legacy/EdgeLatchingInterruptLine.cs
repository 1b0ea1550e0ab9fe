using KvmSharp.Devices.Bus;

namespace KvmSharp.Tests.Unit.Devices.Legacy;

/// <summary>
/// An edge-triggered ISA interrupt input as the PIC sees IRQ 1: a rising edge latches a request (one bit, like
/// IRR) until the guest takes it; a level that stays high does not request again. Also records every level.
/// </summary>
internal sealed class EdgeLatchingInterruptLine : IInterruptLine
{
    private readonly List<bool> _levels = [];
    private bool _level;

    public IReadOnlyList<bool> Levels => _levels;

    public bool IsAsserted => _level;

    public bool RequestPending { get; private set; }

    public int RisingEdges { get; private set; }

    public void SetLevel(bool asserted)
    {
        _levels.Add(asserted);
        if (asserted && !_level)
        {
            RisingEdges++;
            RequestPending = true;
        }

        _level = asserted;
    }

    /// <summary>Acknowledge the latched request, as the CPU does when it takes the interrupt.</summary>
    public bool TakeRequest()
    {
        bool pending = RequestPending;
        RequestPending = false;
        return pending;
    }

    public void ClearHistory()
    {
        _levels.Clear();
        RisingEdges = 0;
    }
}
