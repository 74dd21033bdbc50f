# chatd in a small image: build with the Rust toolchain, run on Debian slim as a non-root user.
#   docker build -t chatd .
#   docker run -p 8080:8080 chatd                      # http://localhost:8080
# TLS: see the README ("Deploy on a VPS"): mount the certificates read-only and pass --cert/--key.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p chatd \
 && strip target/release/chatd

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin chatd
COPY --from=build /src/target/release/chatd /usr/local/bin/chatd
USER 10001:10001
EXPOSE 8080
ENV RUST_LOG=chatd=info
ENTRYPOINT ["/usr/local/bin/chatd"]
CMD ["--listen", "0.0.0.0:8080"]
