using KvmSharp.Devices.Serial;
using KvmSharp.Devices.Virtio.Console;

namespace KvmSharp.Vmm.Devices;

/// <summary>Typed bytes for hvc0: the virtio-console holds them until the guest posts receive buffers (and drops beyond its limit, counted).</summary>
public sealed class VirtioConsoleInput(VirtioConsole console) : IConsoleInput
{
    public int EnqueueInput(ReadOnlySpan<byte> values)
    {
        console.SendInput(values);
        return values.Length;
    }
}
