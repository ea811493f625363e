# The governance-engine service image. docker-compose.yml builds it; nothing in this repo's
# tests needs a Docker engine.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# librdkafka is built from source, with OpenSSL (libssl-dev) for Kafka TLS and SCRAM.
RUN apt-get update && apt-get install -y --no-install-recommends cmake libssl-dev pkg-config && rm -rf /var/lib/apt/lists/*
COPY . .
RUN cargo build --locked --release --bin governance-engine

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates curl libssl3 && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 governance
COPY --from=build /src/target/release/governance-engine /usr/local/bin/governance-engine
USER governance
EXPOSE 8000
ENV AUMOS_HTTP_ADDR=0.0.0.0:8000
HEALTHCHECK --interval=10s --timeout=3s CMD curl -fsS http://127.0.0.1:8000/health/ready || exit 1
ENTRYPOINT ["governance-engine"]
CMD ["serve"]
