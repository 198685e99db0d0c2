# kube-baseline container image: the operator (`run`), the node agent (`agent`) and the
# offline checker (`check`) are one binary.
#
# This file is kept correct by reading: the machines the project is built on have no Docker
# engine. Base images are pinned to exact versions; pin their digests in your registry mirror.

FROM docker.io/library/rust:1.95.0-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so source edits do not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
COPY crds ./crds
COPY config/samples ./config/samples
COPY examples ./examples
RUN touch src/main.rs src/lib.rs && cargo build --release --locked

# distroless/cc: glibc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/kube-baseline /usr/local/bin/kube-baseline
# 65532 is distroless' nonroot user; numeric so runAsNonRoot can verify it.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/kube-baseline"]
CMD ["run"]
