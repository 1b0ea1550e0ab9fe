namespace KvmSharp.Vmm.Machine;

/// <summary>
/// Attaches one device to a machine being built: creates it, registers it on the buses, wires its
/// interrupts and resources through <paramref name="machine"/>. Adding a device to KvmSharp = its
/// folder + one attach step.
/// </summary>
public delegate void AttachStep(MachineContext machine);

/// <summary>A named attach step (the name appears in errors and logs).</summary>
public sealed record DeviceAttachment(string Name, AttachStep Attach);
