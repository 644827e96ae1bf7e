# syntax=docker/dockerfile:1
#
# writer-sync as a container image: the daemon as a non-root user on a
# distroless base (no shell, no package manager), ready for a read-only
# root filesystem. State lives in a volume, config and credential are
# mounted (README "Run it as a container"):
#
#   docker build --build-arg WRITER_SYNC_GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t writer-sync .
#   docker run -d --name writer-sync --read-only --tmpfs /tmp \
#     -v writer-sync-state:/var/lib/writer-sync \
#     -v /srv/writer-sync/config.toml:/etc/writer-sync/config.toml:ro \
#     -v /srv/writer-sync/okta-api-token:/run/secrets/okta-api-token:ro \
#     -p 127.0.0.1:9464:9464 writer-sync

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The build context has no .git: the commit for --version comes from here.
ARG WRITER_SYNC_GIT_COMMIT=unknown
ENV WRITER_SYNC_GIT_COMMIT=${WRITER_SYNC_GIT_COMMIT}
# Without the `demo` feature: no Okta simulator in a production binary.
RUN cargo build --release --locked --no-default-features \
 && install -d -m 0700 -o 65532 -g 65532 /out/state

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/writer-sync /usr/bin/writer-sync
# The state volume starts out owned by the service user (a new named volume
# takes the ownership and mode of this directory).
COPY --from=build --chown=65532:65532 /out/state /var/lib/writer-sync
# The default SQLite store is $STATE_DIRECTORY/writer.db; the credential
# okta-api-token (or okta-private-key) is read from $CREDENTIALS_DIRECTORY,
# where Docker and Compose secrets are mounted.
ENV WRITER_SYNC_CONFIG=/etc/writer-sync/config.toml \
    STATE_DIRECTORY=/var/lib/writer-sync \
    CREDENTIALS_DIRECTORY=/run/secrets
USER 65532:65532
VOLUME ["/var/lib/writer-sync"]
# server.listen must be "0.0.0.0:9464" in the mounted config to publish it.
EXPOSE 9464
# No curl in the image: the binary asks its own /healthz.
HEALTHCHECK --interval=30s --timeout=10s --start-period=5m --retries=3 \
  CMD ["/usr/bin/writer-sync", "healthcheck", "--addr", "127.0.0.1:9464"]
ENTRYPOINT ["/usr/bin/writer-sync"]
CMD ["run"]
