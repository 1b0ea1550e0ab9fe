# KvmSharp in a container: a multi-stage build that compiles `kvmsharp` with NativeAOT (the same
# `dotnet publish src/KvmSharp -c Release -r linux-x64 -p:PublishAot=true` as the README's Install
# section) and ships the single native binary in the chiseled runtime-deps image: no .NET runtime,
# no shell, no package manager, running as the image's non-root user.
#
#   docker build -t kvmsharp .
#   docker run --rm --device /dev/kvm --group-add "$(stat -c %g /dev/kvm)" kvmsharp          # the built-in guest
#   docker run --rm --device /dev/kvm --group-add "$(stat -c %g /dev/kvm)" kvmsharp caps     # the host's KVM facts
#   docker run --rm --device /dev/kvm --group-add "$(stat -c %g /dev/kvm)" -v "$PWD:/guest:ro" \
#       kvmsharp run --image /guest/app.bin --entry 0x200000
#
# By default the image runs as a daemon: the VM in /etc/kvmsharp/vm.json (the API's JSON; the image's own boots the
# built-in guest), controllable through the API socket /run/kvmsharp/api.sock on a volume the host (or a sidecar) mounts:
#
#   docker run -d --name vm1 --device /dev/kvm --group-add "$(stat -c %g /dev/kvm)" \
#       -v /run/kvmsharp/vm1:/run/kvmsharp -v "$PWD/vm.json:/etc/kvmsharp/vm.json:ro" -v "$PWD:/guest:ro" kvmsharp
#   sudo curl --unix-socket /run/kvmsharp/vm1/api.sock http://localhost/
#
# The socket is mode 0600, owned by uid 1654: on the host, root (or uid 1654) may use it.
#
# /dev/kvm must be passed with --device; no --privileged is needed. The process runs as uid 1654
# (the images' `app` user), so it needs the group that owns /dev/kvm on the host: --group-add takes
# that group's id (`stat -c %g /dev/kvm`, or `getent group kvm | cut -d: -f3`; the name alone does
# not work, the container has no such group). On a host where /dev/kvm is root-only (mode 0600),
# give it to the kvm group first (`chgrp kvm /dev/kvm && chmod 660 /dev/kvm`, which is what
# udev does on most distributions) or run with --user 0.
# The container's exit status is the guest's (see the README), so a CI job can use it directly.

# The SDK image and the final image are both Ubuntu 24.04 (noble), so the binary's glibc matches.
FROM mcr.microsoft.com/dotnet/sdk:10.0-noble AS build
# NativeAOT links with clang and needs zlib's headers; llvm gives it objcopy to split debug symbols.
RUN apt-get update \
    && apt-get install -y --no-install-recommends clang llvm zlib1g-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Restore first, from the project files only, so the layer is cached across source edits. The
# runtime identifier and PublishAot are given here too, so the ILCompiler package is restored.
COPY KvmSharp.sln Directory.Build.props Directory.Packages.props ./
COPY src/KvmSharp.Kvm/KvmSharp.Kvm.csproj src/KvmSharp.Kvm/
COPY src/KvmSharp.Memory/KvmSharp.Memory.csproj src/KvmSharp.Memory/
COPY src/KvmSharp.Vmm/KvmSharp.Vmm.csproj src/KvmSharp.Vmm/
COPY src/KvmSharp/KvmSharp.csproj src/KvmSharp/
COPY devices/KvmSharp.Devices/KvmSharp.Devices.csproj devices/KvmSharp.Devices/
RUN dotnet restore src/KvmSharp/KvmSharp.csproj -r linux-x64 -p:PublishAot=true
COPY src/ src/
COPY devices/ devices/
RUN dotnet publish src/KvmSharp/KvmSharp.csproj -c Release -r linux-x64 -p:PublishAot=true --no-restore -o /app \
    && rm -f /app/*.dbg /app/*.pdb
# The daemon's directories: the API socket's (a volume) and the config file's, owned by the image's user. The
# runtime image has no shell to make them, so they are made here and copied.
COPY docs/api/vm.json /daemon/etc/kvmsharp/vm.json
RUN mkdir -p /daemon/run/kvmsharp

FROM mcr.microsoft.com/dotnet/runtime-deps:10.0-noble-chiseled AS runtime
WORKDIR /app
COPY --from=build /app/kvmsharp /app/appsettings.json ./
COPY --from=build --chown=1654:1654 /daemon/run/kvmsharp /run/kvmsharp
COPY --from=build /daemon/etc/kvmsharp /etc/kvmsharp
VOLUME /run/kvmsharp
# The diagnostics IPC (dotnet-diagnostic-* socket, debugger pipes) is not compiled into the AOT
# binary; the variable keeps it off should a JIT build ever be put here.
ENV DOTNET_EnableDiagnostics=0
# 1654 is the `app` user of Microsoft's .NET images ($APP_UID): never root.
USER 1654
# Logs go to stderr, the guest's serial console to stdout.
ENTRYPOINT ["/app/kvmsharp"]
# A daemon: the VM the config file describes, with the control API on the volume. `docker run ... kvmsharp run ...`
# (any arguments) replaces this, e.g. for a one-shot guest; add --wait-for-start to configure it through the API.
CMD ["run", "--config-file", "/etc/kvmsharp/vm.json", "--api-sock", "/run/kvmsharp/api.sock"]
