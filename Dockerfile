# One build for every binary, then a small runtime image per program:
#   docker build --target kuma-cp -t kuma/kuma-cp .
#   (kuma-cp, kuma-dp, kuma-init, kuma-injector, kumactl, kuma-tcp-echo)

# The GUI's files, which kuma-cp embeds when it is built.
FROM node:20-bookworm-slim AS gui
WORKDIR /gui
COPY gui/package.json gui/package-lock.json ./
RUN npm ci
COPY gui ./
RUN npm run build

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
# kumactl embeds the chart when it is built (crates/install), kuma-cp the
# GUI (crates/api).
COPY charts ./charts
COPY --from=gui /gui/dist ./gui/dist
COPY crates ./crates
COPY src ./src
RUN cargo build --release --locked --bins \
    && mkdir /out \
    && cp target/release/kuma-cp target/release/kuma-dp target/release/kumactl \
          target/release/kuma-injector target/release/kuma-tcp-echo /out/

# Envoy for the sidecar, from its official image.
FROM envoyproxy/envoy:v1.40-latest AS envoy

FROM gcr.io/distroless/cc-debian12:nonroot AS kuma-cp
COPY --from=build /out/kuma-cp /usr/bin/kuma-cp
ENTRYPOINT ["/usr/bin/kuma-cp"]
CMD ["run"]

FROM gcr.io/distroless/cc-debian12:nonroot AS kuma-injector
COPY --from=build /out/kuma-injector /usr/bin/kuma-injector
ENTRYPOINT ["/usr/bin/kuma-injector"]
CMD ["run"]

# The sidecar: kuma-dp and Envoy, as UID 5678 (whose traffic the
# transparent-proxy rules leave alone).
FROM gcr.io/distroless/cc-debian12:nonroot AS kuma-dp
COPY --from=build /out/kuma-dp /usr/bin/kuma-dp
COPY --from=envoy /usr/local/bin/envoy /usr/bin/envoy
USER 5678:5678
ENTRYPOINT ["/usr/bin/kuma-dp"]
CMD ["run"]

# kuma-init: writes the pod's iptables rules (legacy and nft back ends).
FROM debian:bookworm-slim AS kuma-init
RUN apt-get update \
    && apt-get install -y --no-install-recommends iptables=1.8.* \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/kumactl /usr/bin/kumactl
ENTRYPOINT ["/usr/bin/kumactl", "install", "transparent-proxy"]

FROM gcr.io/distroless/cc-debian12:nonroot AS kumactl
COPY --from=build /out/kumactl /usr/bin/kumactl
ENTRYPOINT ["/usr/bin/kumactl"]

FROM gcr.io/distroless/cc-debian12:nonroot AS kuma-tcp-echo
COPY --from=build /out/kuma-tcp-echo /usr/bin/kuma-tcp-echo
ENTRYPOINT ["/usr/bin/kuma-tcp-echo"]
CMD ["run", "--port", "7000"]
