# pulse in a scratch image: nothing but the static musl binary.
#
# No base image is pulled and nothing can RUN here: the binary is built on
# the host first and only copied in:
#   ./run.sh build      (that is: cargo build --release --target x86_64-unknown-linux-musl)
#   docker-compose build        (or: docker build -t pulse .)
# The build context is cut down to that one file by .dockerignore.
#
# Written for the classic builder (Docker 20.10 driven by docker-compose v1)
# as well as BuildKit, so no BuildKit-only syntax.
FROM scratch

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="pulse" \
      org.opencontainers.image.description="Cluster node: registry heartbeats, Erlang-distribution pings, one status line per interval" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="scratch"

# The binary is copied through a link whose name is the command that builds
# it: when the binary is missing, the engine's "file not found" error names
# the link, so the error says what to run.
COPY ["docker/no static binary yet, build it with: cargo build --release --target x86_64-unknown-linux-musl", "/pulse"]

# No /etc/passwd here, so the user is a bare number (the "nonroot" id of
# distroless images). Compose may pick another (PULSE_UID), never root.
USER 65532:65532

# The registry (/tmp/sync_dir/) and the log (/tmp/log/) are pulse's defaults;
# docker-compose.yml mounts the host's /tmp there, shared by every container,
# and the nodes create both dirs. The image has no writable /tmp of its own.
# A lone node for a try: docker run --rm -e PULSE_COOKIE=c --tmpfs /tmp:mode=1777 pulse
# Names default to md5(date -Ins)@<container IP>; with no `date` in the
# image, pulse writes that timestamp itself, in UTC.

# No EPMD can run here, so the node answers EPMD's port requests for its own
# name on 4369 itself: Erlang nodes on the same network can then ping it.
ENV PULSE_EPMD=serve

# pulse leaves the registry and exits 0 on SIGTERM; it is PID 1 and handles
# the signal itself, so no init is needed.
STOPSIGNAL SIGTERM

# `pulse health` finds the registered node whose address is this container's
# IP and does a real handshake and ping with it. The cookie comes from
# PULSE_COOKIE, which the container's environment must set (no $HOME here).
HEALTHCHECK --interval=5s --timeout=3s --start-period=5s --retries=3 \
    CMD ["/pulse", "health"]

ENTRYPOINT ["/pulse"]
