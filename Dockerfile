# KvmSharp in a container: a multi-stage build that publishes `kvmsharp` (the same
# `dotnet publish src/KvmSharp -c Release` the README gives) into the slim .NET runtime image.
#
#   docker build -t kvmsharp .
#   docker run --rm --device /dev/kvm kvmsharp                 # boots the built-in guest
#   docker run --rm --device /dev/kvm kvmsharp caps            # the host's KVM facts
#   docker run --rm --device /dev/kvm -v "$PWD:/guest:ro" kvmsharp run --image /guest/app.bin --entry 0x200000
#
# /dev/kvm must be passed with --device; no --privileged is needed. The container's exit status is
# the guest's (see the README), so a CI job can use it directly.

FROM mcr.microsoft.com/dotnet/sdk:10.0 AS build
WORKDIR /src
# Restore first, from the project files only, so the layer is cached across source edits.
COPY KvmSharp.sln Directory.Build.props Directory.Packages.props ./
COPY src/KvmSharp.Kvm/KvmSharp.Kvm.csproj src/KvmSharp.Kvm/
COPY src/KvmSharp.Memory/KvmSharp.Memory.csproj src/KvmSharp.Memory/
COPY src/KvmSharp.Vmm/KvmSharp.Vmm.csproj src/KvmSharp.Vmm/
COPY src/KvmSharp/KvmSharp.csproj src/KvmSharp/
COPY devices/KvmSharp.Devices/KvmSharp.Devices.csproj devices/KvmSharp.Devices/
RUN dotnet restore src/KvmSharp/KvmSharp.csproj
COPY src/ src/
COPY devices/ devices/
RUN dotnet publish src/KvmSharp/KvmSharp.csproj -c Release --no-restore -o /app

FROM mcr.microsoft.com/dotnet/runtime:10.0 AS runtime
WORKDIR /app
COPY --from=build /app ./
# Logs go to stderr, the guest's serial console to stdout.
ENTRYPOINT ["dotnet", "/app/kvmsharp.dll"]
CMD ["run"]
