namespace KvmSharp.Devices.Serial;

/// <summary>Where a UART's transmitted bytes go (stdout, a log file, a test buffer).</summary>
public interface ISerialSink
{
    /// <summary>Accept one transmitted byte. Called on vCPU threads: must not allocate on the common path.</summary>
    void Write(byte value);
}
