namespace KvmSharp.Tests.Integration.Infrastructure;

/// <summary>The repository the tests were built from (the directory holding KvmSharp.sln), for its scripts.</summary>
public static class SourceTree
{
    private static readonly Lazy<string> Found = new(() =>
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "KvmSharp.sln"))) return dir.FullName;
        throw new DirectoryNotFoundException($"no KvmSharp.sln above {AppContext.BaseDirectory}");
    });

    public static string Root => Found.Value;
}
