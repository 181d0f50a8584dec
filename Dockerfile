# Multi-stage image: a static-enough Rust binary on a distroless, non-root runtime.
# These machines have no Docker engine; CI builds the exact cargo target below instead
# (`make release`), so the image build cannot break on code.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY benches ./benches
RUN cargo build --release --locked --bin frontegg-token-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/frontegg-token-operator /usr/local/bin/frontegg-token-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/frontegg-token-operator"]
CMD ["run"]
