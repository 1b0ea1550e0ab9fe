using KvmSharp.Devices.Bus;

namespace KvmSharp.Tests.Unit.Devices;

/// <summary>Remembers every level a device drove, so tests can check both the current level and the edges.</summary>
internal sealed class RecordingInterruptLine : IInterruptLine
{
    private readonly List<bool> _levels = [];

    public IReadOnlyList<bool> Levels => _levels;

    public bool IsAsserted => _levels.Count > 0 && _levels[^1];

    public void SetLevel(bool asserted) => _levels.Add(asserted);

    public void Clear() => _levels.Clear();
}
