namespace KvmSharp.Devices.Virtio.Console;

/// <summary>A named port of a multiport <see cref="VirtioConsole"/> (ports 1, 2, ... in the order given; port 0 is the console).</summary>
public sealed class VirtioConsolePort(string name, IConsolePortBackend backend) : IDisposable
{
    public string Name { get; } = name;

    public IConsolePortBackend Backend { get; } = backend;

    public void Dispose() => Backend.Dispose();
}
