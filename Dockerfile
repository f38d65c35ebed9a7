# The zone image of zone-program (x86_64, glibc, OpenSSL 3). Build and export it with
# scripts/export-image.sh, which passes the two named contexts below; by hand (BuildKit):
#
#   docker build --platform linux/amd64 \
#     --build-context deploy=deploy \
#     --build-context vendor-sdk=/path/to/extracted/vendor-sdk \
#     -t zone-program .
#
# Named contexts (both optional to the Dockerfile; an empty one is an empty directory):
#   deploy      config.toml (required: the build stops without it) and keys/*.pem (optional)
#   vendor-sdk  the vendor SDK: cpp_sdk.h and libWeWorkSpecSDK.so. Without it the image has no
#               native backend and cannot serve in the zone (useful only to try the image locally).
#
# Layout in the image (the exported tar keeps no ENV, WORKDIR or ENTRYPOINT: start.sh sets all):
#   /opt/zone-program/bin/zone-programd, bin/start.sh, lib/ (shim + vendor SDK), config.toml,
#   keys/ (0700, files 0600), data/ (0700, the SQLite store).

ARG RUST_IMAGE=rust:1.95-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

FROM scratch AS deploy
FROM scratch AS vendor-sdk

FROM --platform=linux/amd64 ${RUST_IMAGE} AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ libssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The release binary (glibc; the vendor SDK does not run on musl).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p zone-program --bin zone-programd \
 && install -D -m 0755 target/release/zone-programd /stage/opt/zone-program/bin/zone-programd
# The native shim, built against the vendor SDK when one is supplied; it finds the vendor library
# beside itself ($ORIGIN), in /opt/zone-program/lib.
RUN --mount=type=bind,from=vendor-sdk,target=/vendor-sdk \
    set -eu; \
    install -d -m 0755 /stage/opt/zone-program/lib; \
    if [ -f /vendor-sdk/cpp_sdk.h ]; then \
      native/build.sh --sdk-dir /vendor-sdk --out /stage/opt/zone-program/lib; \
      install -m 0755 /vendor-sdk/libWeWorkSpecSDK.so /stage/opt/zone-program/lib/; \
    else \
      echo "no vendor SDK supplied: the image has no native backend (it cannot serve in the zone)"; \
    fi
# The provider's configuration and keys, the start script, the data directory.
RUN --mount=type=bind,from=deploy,target=/deploy \
    set -eu; \
    z=/stage/opt/zone-program; \
    if [ ! -f /deploy/config.toml ]; then \
      echo "no config.toml in the deploy context: pass --build-context deploy=DIR (see README, Deployment)" >&2; \
      exit 1; \
    fi; \
    install -m 0644 /deploy/config.toml "$z/config.toml"; \
    install -d -m 0700 "$z/keys" "$z/data"; \
    if [ -d /deploy/keys ]; then \
      find /deploy/keys -maxdepth 1 -type f -name '*.pem' ! -name '*.pub.pem' -exec install -m 0600 {} "$z/keys/" \; ; \
    fi; \
    install -m 0755 scripts/start.sh "$z/bin/start.sh"

FROM --platform=linux/amd64 ${RUNTIME_IMAGE}
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 libstdc++6 \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /stage/ /
# The start check runs at build time too: a broken config or key file fails the build, not the zone.
# (The port and SDK checks pass here because nothing listens and the shim is present.)
RUN cd /opt/zone-program && bin/zone-programd --config config.toml preflight
EXPOSE 8080
# For `docker run` only; the zone uses the start command and arguments of its upload form.
ENTRYPOINT ["/bin/sh", "/opt/zone-program/bin/start.sh"]
