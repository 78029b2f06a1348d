# syntax=docker/dockerfile:1
# The AttestMesh node image: one binary, `attestmesh`, running as the agent sidecar next to the
# application in a dstack CVM (deploy/docker-compose.yaml). Multi-stage: the Rust toolchain and
# the build cache never reach the runtime image.
#
#   docker build -t attestmesh:dev .
#
# The example application (crates/example-app, the compose file's `app` service) is the
# `example-app` target of the same build; the last stage, the node image, stays the default:
#
#   docker build --target example-app -t ghcr.io/attestmesh/example-app:dev .
#
# The compose hash a cluster allowlists covers the compose file, which names this image: pin it by
# digest (image: …@sha256:…) in production so the allowlisted hash means exactly this build.

ARG RUST_VERSION=1.90
ARG DEBIAN=bookworm

FROM rust:${RUST_VERSION}-slim-${DEBIAN} AS builder
WORKDIR /src
# Everything the workspace build reads: crates, the protocol files (compiled by protox, no
# protoc), the contract artifacts the operator CLI embeds, and the spec vectors. The release
# binary is built without the `devnet` feature: the image carries no test harness.
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
COPY proto ./proto
COPY artifacts ./artifacts
COPY spec ./spec
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --no-default-features -p attestmesh-cli --bin attestmesh \
        -p attestmesh-example-app --bin attestmesh-example \
    && install -D -m 0755 target/release/attestmesh /out/attestmesh \
    && install -D -m 0755 target/release/attestmesh-example /out/attestmesh-example

# The example application: it only talks to the agent's unix socket and to peers' mesh IPs, so
# it needs nothing beyond the base image. Declared before the node image so that stays the
# default (last) stage.
FROM debian:${DEBIAN}-slim AS example-app
COPY --from=builder /out/attestmesh-example /usr/local/bin/attestmesh-example
ENV AGENT_SOCKET=/var/run/attestmesh/agent.sock
ENTRYPOINT ["/usr/local/bin/attestmesh-example"]
CMD ["serve-echo"]

FROM debian:${DEBIAN}-slim AS runtime
# iproute2: the agent configures the mesh interface (ip link/addr/route) and operators debug with
# it; curl: the container healthcheck (GET /healthz); ca-certificates: TLS to hosted RPCs for
# anything that uses the system store.
RUN apt-get update \
    && apt-get install -y --no-install-recommends iproute2 curl ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /out/attestmesh /usr/local/bin/attestmesh
# The app API socket lives here; compose shares the directory with the application container.
RUN mkdir -p /var/run/attestmesh && chmod 0755 /var/run/attestmesh
ENV HEALTH_ADDR=127.0.0.1:9090 \
    AGENT_SOCKET=/var/run/attestmesh/agent.sock \
    DSTACK_SOCKET=/var/run/dstack.sock
EXPOSE 51900/tcp
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD curl -fsS http://127.0.0.1:9090/healthz || exit 1
ENTRYPOINT ["/usr/local/bin/attestmesh"]
CMD ["node"]
