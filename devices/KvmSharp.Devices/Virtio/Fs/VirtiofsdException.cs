namespace KvmSharp.Devices.Virtio.Fs;

/// <summary>virtiofsd is missing, would not start, or broke off: the message says which share and what to do.</summary>
public sealed class VirtiofsdException(string message, Exception? inner = null) : IOException(message, inner);
