# chatd in a small image: build with the Rust toolchain, run on Debian slim as a non-root user.
#   docker build -t chatd .
#   docker run -p 8080:8080 chatd                      # http://localhost:8080
# TLS: see the README ("Deploy on a VPS"): either automatic certificates with a volume for
# /data (--domain), or mount existing certificates read-only and pass --cert/--key.

FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p chatd \
 && strip target/release/chatd

FROM debian:bookworm-slim
# ca-certificates: the ACME client (--domain) verifies the CA's HTTPS against the system roots.
# Not pinned (DL3008): the CA list should take Debian's updates whenever the image is rebuilt.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --no-create-home --shell /usr/sbin/nologin chatd \
 && install -d -o 10001 -g 10001 -m 0700 /data
COPY --from=build /src/target/release/chatd /usr/local/bin/chatd
USER 10001:10001
EXPOSE 8080
ENV RUST_LOG=chatd=info
ENTRYPOINT ["/usr/local/bin/chatd"]
CMD ["--listen", "0.0.0.0:8080"]
