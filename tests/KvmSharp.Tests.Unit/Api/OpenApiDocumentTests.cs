using KvmSharp.Api;
using KvmSharp.Hosting;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Xunit;

namespace KvmSharp.Tests.Unit.Api;

/// <summary>
/// docs/api/kvmsharp.yaml against the server: the same paths, methods and response statuses as the route table, and
/// the table is exactly what the server maps (read back from a built app's endpoints).
/// </summary>
public sealed class OpenApiDocumentTests
{
    private static string DocumentPath()
    {
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            string candidate = Path.Combine(directory.FullName, "docs", "api", "kvmsharp.yaml");
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException("docs/api/kvmsharp.yaml not found above " + AppContext.BaseDirectory);
    }

    /// <summary>The document's operations as "METHOD PATH -> statuses", read from its layout (paths at 2 spaces, methods at 4, statuses at 8).</summary>
    internal static SortedDictionary<string, string> DocumentedOperations()
    {
        var operations = new SortedDictionary<string, List<int>>(StringComparer.Ordinal);
        string? path = null, current = null;
        bool inPaths = false;
        foreach (string line in File.ReadLines(DocumentPath()))
        {
            if (!line.StartsWith(' ') && line.Length > 0) inPaths = line == "paths:";
            if (!inPaths) continue;
            string trimmed = line.Trim();
            int indent = line.Length - line.TrimStart().Length;
            if (indent == 2 && trimmed.EndsWith(':')) path = trimmed[..^1];
            else if (indent == 4 && trimmed is "get:" or "put:" or "patch:" or "post:" or "delete:")
            {
                current = $"{trimmed[..^1].ToUpperInvariant()} {path}";
                operations[current] = [];
            }
            else if (indent == 8 && current is not null && trimmed.StartsWith('"') && int.TryParse(trimmed[1..4], out int status))
                operations[current].Add(status);
        }
        return new SortedDictionary<string, string>(operations.ToDictionary(o => o.Key, o => string.Join(",", o.Value.Order())), StringComparer.Ordinal);
    }

    private static SortedDictionary<string, string> TableOperations() =>
        new(ApiRoute.All.ToDictionary(r => $"{r.Method} {r.Path}", r => string.Join(",", r.Statuses.Order())), StringComparer.Ordinal);

    [Fact]
    public void Document_lists_exactly_the_routes_methods_and_statuses_of_the_server()
    {
        var documented = DocumentedOperations();
        var table = TableOperations();
        Assert.True(documented.Count >= 13, $"the parser found only {documented.Count} operations in the document");
        Assert.Equal(table, documented);
    }

    [Fact]
    public void Server_maps_every_route_of_the_table_and_nothing_else()
    {
        var builder = WebApplication.CreateSlimBuilder();
        using var app = builder.Build();
        var api = new VmApi(new ActiveVm(), options: null, preBoot: null);
        ApiServer.MapRoutes(app, api, CancellationToken.None);

        var mapped = ((IEndpointRouteBuilder)app).DataSources.SelectMany(source => source.Endpoints).OfType<RouteEndpoint>()
            .Where(e => e.Order != int.MaxValue) // the fallback: 404 for anything else
            .SelectMany(e => (e.Metadata.GetMetadata<Microsoft.AspNetCore.Routing.HttpMethodMetadata>()?.HttpMethods ?? ["ANY"])
                .Select(method => $"{method} {e.RoutePattern.RawText}"))
            .Order(StringComparer.Ordinal).ToList();

        Assert.Equal(ApiRoute.All.Select(r => $"{r.Method} {r.Path}").Order(StringComparer.Ordinal).ToList(), mapped);
    }
}
