namespace KvmSharp.Tests.Integration.DirtyLog;

/// <summary>A dirty-log check found a harvested set, counter or VM outcome other than expected.</summary>
internal sealed class DirtyLogCheckException(string message) : Exception(message);
