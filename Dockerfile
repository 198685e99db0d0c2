# syntax=docker/dockerfile:1
# kube-baseline container image: the operator (`run`), the node agent (`agent`) and the
# offline checker (`check`) are one binary.
#
# This file is kept correct by reading: the machines the project is built on have no Docker
# engine. Base images are pinned to exact versions; pin their digests in your registry mirror.

FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# make: the jemalloc allocator (tikv-jemalloc-sys) is built from its C sources.
RUN apt-get update && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
# The whole workspace (see .dockerignore): Cargo needs every member's manifest to resolve it.
COPY . .
# Cache mounts keep the registry and build artefacts between builds without baking them in.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p kube-baseline \
    && cp target/release/kube-baseline /kube-baseline

# distroless/cc: glibc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /kube-baseline /usr/local/bin/kube-baseline
# 65532 is distroless' nonroot user; numeric so runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kube-baseline"]
CMD ["run"]
