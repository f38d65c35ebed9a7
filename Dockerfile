# Minimal image of the program (the deployment issue completes it: native shim, vendor SDK, start script).
FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/zone-program /opt/zone-program/bin/zone-program
COPY config.example.toml /opt/zone-program/config.toml
WORKDIR /opt/zone-program
EXPOSE 8080
ENTRYPOINT ["/opt/zone-program/bin/zone-program", "--config", "/opt/zone-program/config.toml", "serve"]
