# Build: docker build -t shipgate .   Run: docker run -p 8080:8080 -v shipgate:/data shipgate
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# Dependencies first, so that a source change does not rebuild them.
COPY Cargo.toml Cargo.lock build.rs ./
COPY migrations migrations
RUN mkdir -p src bench && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > bench/loadgen.rs \
    && cargo build --release --locked --bin shipgate && rm -rf src
COPY src src
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin shipgate && strip target/release/shipgate

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home-dir /data --create-home shipgate
COPY --from=build /src/target/release/shipgate /usr/local/bin/shipgate
USER shipgate
WORKDIR /data
ENV SHIPGATE_LISTEN=0.0.0.0:8080 DATABASE_URL=sqlite:///data/shipgate.db SHIPGATE_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["shipgate"]
CMD ["serve"]
