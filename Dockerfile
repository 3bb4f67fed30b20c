# syntax=docker/dockerfile:1
#
# canopy's container image: the static `canopy` binary (musl) on a distroless base,
# running as the non-root user 65532. Build it from the repository root:
#
#   docker build -t canopy:0.1.0 .
#   docker buildx build --platform linux/amd64,linux/arm64 -t REGISTRY/canopy:0.1.0 --push .
#
# Each platform is built natively (under emulation for a foreign one), so no cross
# linker is needed. BuildKit cache mounts keep the cargo registry and target directory
# between builds.

ARG RUST_VERSION=1.95
FROM rust:${RUST_VERSION}-bookworm AS builder
# musl-tools: the C compiler for ring's assembly and C parts when targeting musl.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# The target triple of this platform, e.g. x86_64-unknown-linux-musl.
RUN echo "$(uname -m)-unknown-linux-musl" > /rust-target \
 && rustup target add "$(cat /rust-target)"
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(cat /rust-target)" \
 && cargo build --release --locked --target "$target" --bin canopy \
 && cp "target/$target/release/canopy" /canopy \
 && /canopy --version

FROM gcr.io/distroless/static-debian12:nonroot
LABEL org.opencontainers.image.title="canopy" \
      org.opencontainers.image.description="Kubernetes multi-tenancy: namespace trees, tenants, policy propagation and admission checks" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=builder /canopy /canopy
# 65532 is distroless's `nonroot`; the Helm chart and kustomize base run as it too.
USER 65532:65532
EXPOSE 9443
ENTRYPOINT ["/canopy"]
CMD ["manager", "--tls-cert-file=/etc/canopy/tls/tls.crt", "--tls-key-file=/etc/canopy/tls/tls.key"]
