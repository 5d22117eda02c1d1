# Build: cgo against Debian's libgit2 1.5 (what git2go v34 requires).
FROM golang:1.26-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends libgit2-dev pkg-config && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN go build -ldflags "-X main.version=${VERSION}" -o /out/refkeeper ./cmd/refkeeper

# The job binary: the client commands alone (checkout, pin, get, ...),
# CGO_ENABLED=0, so no libgit2 in this stage or in its image.
FROM golang:1.26-bookworm AS build-job
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-X main.version=${VERSION}" -o /out/refkeeper ./cmd/refkeeper-job

# The image CI jobs run in (docker build --target job): git and the static
# job binary as `refkeeper`, nothing else. No ENTRYPOINT and no USER: CI
# runners start their own shell in a job's image as the user they choose
# (GitLab needs `entrypoint: [""]` otherwise).
FROM alpine:3.22 AS job
RUN apk add --no-cache git ca-certificates
COPY --from=build-job /out/refkeeper /usr/local/bin/refkeeper

# Run: libgit2 for reads, git for ref transactions and smart HTTP. The last
# stage, so a plain `docker build` still builds the server's image.
FROM debian:bookworm-slim AS serve
RUN apt-get update && apt-get install -y --no-install-recommends libgit2-1.5 git ca-certificates && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /data refkeeper && mkdir -p /data/repos && chown -R refkeeper /data
COPY --from=build /out/refkeeper /usr/local/bin/refkeeper
USER refkeeper
VOLUME /data
# Listening on every address, the process cannot know where runners reach
# it: set REFKEEPER_FETCH_URL (without it fetch_url names the container's
# host name, and the log says so).
ENV REFKEEPER_LISTEN=0.0.0.0:8080 REFKEEPER_REPOS=/data/repos
EXPOSE 8080
# SIGTERM starts a shutdown of at most REFKEEPER_SHUTDOWN_TIMEOUT (25s): give
# the container at least that before SIGKILL (docker stop -t 30, compose's
# stop_grace_period, Kubernetes' 30 s default).
STOPSIGNAL SIGTERM
# bash (not dash) knows /dev/tcp; the slim image has no curl.
HEALTHCHECK --interval=10s --timeout=3s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080"]
ENTRYPOINT ["refkeeper"]
CMD ["serve"]
