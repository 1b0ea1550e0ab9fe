namespace KvmSharp.Vmm.Boot.Multiboot;

/// <summary>
/// A boot module: the file at <see cref="Path"/>, handed to the kernel with <see cref="String"/>
/// (the whole "PATH ARGS" text, as GRUB's `module` line and QEMU's -initrd give it).
/// </summary>
public sealed record MultibootModule(string Path, string String)
{
    /// <summary>
    /// QEMU's -initrd syntax for multiboot: modules separated by commas, each "PATH[ ARGS]", ",," for
    /// a comma inside one. Empty items are refused (<see cref="FormatException"/> says where).
    /// </summary>
    public static IReadOnlyList<MultibootModule> ParseList(string text)
    {
        var modules = new List<MultibootModule>();
        var current = new System.Text.StringBuilder();
        for (int i = 0; i <= text.Length; i++)
        {
            if (i < text.Length && text[i] == ',' && i + 1 < text.Length && text[i + 1] == ',')
            {
                current.Append(',');
                i++;
                continue;
            }
            if (i < text.Length && text[i] != ',')
            {
                current.Append(text[i]);
                continue;
            }
            string item = current.ToString().Trim();
            current.Clear();
            if (item.Length == 0)
                throw new FormatException($"module {modules.Count + 1} is empty; give FILE[ ARGS] for each module, separated by commas (a comma in a name as ,,)");
            int space = item.IndexOf(' ');
            modules.Add(new MultibootModule(space < 0 ? item : item[..space], item));
        }
        return modules;
    }
}
