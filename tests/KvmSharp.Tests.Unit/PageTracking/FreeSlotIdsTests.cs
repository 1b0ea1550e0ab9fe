using CsCheck;
using KvmSharp.Memory.PageTracking;
using Xunit;

namespace KvmSharp.Tests.Unit.PageTracking;

/// <summary>The free-id bitmap behaves as the sorted set of ids it replaced, operation by operation.</summary>
public sealed class FreeSlotIdsTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(64)]
    [InlineData(65)]
    [InlineData(32764)]
    public void All_ids_start_free_highest_first(int capacity)
    {
        var free = new FreeSlotIds(capacity);
        Assert.Equal(capacity, free.Count);
        Assert.Equal(capacity - 1, free.Max);
        Assert.Equal(Enumerable.Range(0, capacity).Reverse().Select(id => (ushort)id), free.Descending());
        Assert.False(free.Contains((ushort)capacity));
    }

    [Fact]
    public void Random_removes_and_adds_match_a_sorted_set()
    {
        Gen.Int[1, 300].SelectMany(capacity => Gen.Select(Gen.Bool, Gen.Int[0, capacity - 1]).Array[0, 400].Select(ops => (capacity, ops)))
            .Sample(t =>
            {
                var model = new SortedSet<ushort>(Enumerable.Range(0, t.capacity).Select(id => (ushort)id));
                var free = new FreeSlotIds(t.capacity);
                foreach (var (add, id) in t.ops)
                {
                    bool changed = add ? free.Add((ushort)id) : free.Remove((ushort)id);
                    Assert.Equal(add ? model.Add((ushort)id) : model.Remove((ushort)id), changed);
                    Assert.Equal(model.Count, free.Count);
                    if (model.Count > 0) Assert.Equal(model.Max, free.Max);
                    else Assert.Throws<InvalidOperationException>(() => free.Max);
                }
                Assert.Equal(model.Reverse(), free.Descending());
            }, iter: 500);
    }
}
