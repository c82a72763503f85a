# syntax=docker/dockerfile:1
#
# everestctl-api with the two CLIs it runs, kubectl and everestctl.
#
#   docker buildx build -t everestctl-api .                    # the pinned versions below
#   docker buildx build --platform linux/amd64,linux/arm64 .   # both supported architectures
#
# The CLIs are downloaded at pinned versions and checked against pinned SHA-256 sums: a failed,
# truncated or tampered download fails the build. To use other versions, pass the version AND
# both sums as build args (--build-arg KUBECTL_VERSION=v1.x.y --build-arg KUBECTL_SHA256_AMD64=…):
# - kubectl publishes its sums next to each binary:
#   https://dl.k8s.io/release/<version>/bin/linux/<amd64|arm64>/kubectl.sha256
# - everestctl: the release page https://github.com/openeverest/openeverest/releases lists the
#   binaries everestctl-linux-<amd64|arm64>; the project's Homebrew tap
#   (github.com/openeverest/homebrew-tap, Formula/everestctl.rb) records their sha256 per
#   version. Otherwise download the binary once from a trusted machine and run `sha256sum`.

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=debian:bookworm-slim

# ---------------------------------------------------------------------------------------------
# The service binary.
FROM ${RUST_IMAGE} AS build
WORKDIR /src
# Dependencies first, in their own layer: a change to the sources does not rebuild them.
COPY Cargo.toml Cargo.lock ./
# The bundled SQLite's compile-time options (LIBSQLITE3_FLAGS).
COPY .cargo ./.cargo
RUN mkdir src \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && cargo build --release --locked \
    && rm -rf src
COPY src ./src
# Embedded at compile time by sqlx::migrate!.
COPY migrations ./migrations
# touch: the copied sources may be older than the placeholder build above.
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && install -m 0755 target/release/everestctl-api /usr/local/bin/everestctl-api

# ---------------------------------------------------------------------------------------------
# kubectl and everestctl for the target architecture, verified. Downloads run on the build
# machine's architecture (no emulation needed); the binaries are for TARGETARCH.
FROM --platform=$BUILDPLATFORM ${RUNTIME_IMAGE} AS clis
# Set by BuildKit (docker buildx) from --platform: amd64 or arm64.
ARG TARGETARCH
# kubectl v1.34.4: the sums published next to the binaries. everestctl v1.12.0 (the newest
# version whose behaviour docs/everestctl.md describes): the sums in the project's Homebrew tap.
ARG KUBECTL_VERSION=v1.34.4
ARG KUBECTL_SHA256_AMD64=d50c359d95e0841eaad08ddc27c7be37cba8fdccfba5c8e2ded65e121ff112db
ARG KUBECTL_SHA256_ARM64=5b982c0644ab1e27780246b9085a5886651b4a7ed86243acbb2bacc1bea01dda
ARG EVERESTCTL_VERSION=v1.12.0
ARG EVERESTCTL_SHA256_AMD64=83926c0e09cce17f3dfcdf93458f268d22a7d67a39ec6e2d52f382a6dd1699bc
ARG EVERESTCTL_SHA256_ARM64=a42ec0b72b014c4daf5d9ab77c97f36090730b92cd3c922bcf98acc3c4345c9d
ARG EVERESTCTL_RELEASES=https://github.com/openeverest/openeverest/releases/download
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# Package versions are not pinned: the base image tag pins the Debian release, and Debian
# replaces old versions with security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /clis
RUN case "${TARGETARCH:-}" in \
      amd64) kubectl_sum=${KUBECTL_SHA256_AMD64}; everestctl_sum=${EVERESTCTL_SHA256_AMD64} ;; \
      arm64) kubectl_sum=${KUBECTL_SHA256_ARM64}; everestctl_sum=${EVERESTCTL_SHA256_ARM64} ;; \
      *) echo "TARGETARCH='${TARGETARCH:-}': build with docker buildx (it sets TARGETARCH)" \
              "for linux/amd64 or linux/arm64, or pass --build-arg TARGETARCH=amd64" >&2; \
         exit 1 ;; \
    esac; \
    for sum in "${kubectl_sum}" "${everestctl_sum}"; do \
      [[ ${sum} =~ ^[0-9a-f]{64}$ ]] || { echo "not a SHA-256 sum: '${sum}'" >&2; exit 1; }; \
    done; \
    curl -fsSL --retry 3 --proto '=https' -o kubectl \
      "https://dl.k8s.io/release/${KUBECTL_VERSION}/bin/linux/${TARGETARCH}/kubectl"; \
    curl -fsSL --retry 3 --proto '=https' -o everestctl \
      "${EVERESTCTL_RELEASES}/${EVERESTCTL_VERSION}/everestctl-linux-${TARGETARCH}"; \
    printf '%s  %s\n' "${kubectl_sum}" kubectl "${everestctl_sum}" everestctl | sha256sum -c -; \
    chmod 0755 kubectl everestctl

# ---------------------------------------------------------------------------------------------
# Runtime: Debian slim, non-root user 10001, SQLite under /data.
FROM ${RUNTIME_IMAGE}
SHELL ["/bin/bash", "-euo", "pipefail", "-c"]
# ca-certificates: the CLIs talk TLS to the API server and everestctl fetches Helm charts;
# curl: the HEALTHCHECK; tini: PID 1 that forwards SIGTERM and reaps orphaned grandchildren.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl tini \
    && rm -rf /var/lib/apt/lists/*
# HOME must be writable: everestctl keeps its Helm chart cache in ~/.cache and kubectl its
# discovery cache in ~/.kube/cache. Both CLIs read ~/.kube/config (/home/app/.kube/config) when
# KUBECONFIG is not set: mount a kubeconfig there, or set KUBECONFIG. In a Kubernetes pod
# without either, the service writes one from its service account into /data.
RUN groupadd --gid 10001 app \
    && useradd --uid 10001 --gid 10001 --home-dir /home/app --create-home \
         --shell /usr/sbin/nologin app \
    && install -d -o 10001 -g 10001 -m 0700 /home/app/.kube /data
COPY --from=clis /clis/kubectl /clis/everestctl /usr/local/bin/
COPY --from=build /usr/local/bin/everestctl-api /usr/local/bin/everestctl-api
# The binaries run on this architecture (the clis stage could not run them).
RUN kubectl version --client=true \
    && everestctl version --client-only \
    && everestctl-api --version

# Only what the image's layout needs is set here: the environment wins over a --config file, so
# every other key keeps its default unless given (set PORT, not `port` in a file, if you change
# it: the HEALTHCHECK reads PORT).
ENV HOME=/home/app \
    DATABASE_URL=sqlite:///data/everestctl-api.db
VOLUME ["/data"]
WORKDIR /home/app
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/bin/bash", "-c", "curl -fsS -o /dev/null \"http://127.0.0.1:${PORT:-8080}/healthz\" || exit 1"]
# Exec form: tini is PID 1 and passes SIGTERM to the service, which drains its running jobs for
# SHUTDOWN_GRACE_SECONDS (25 by default; give the container a stop timeout above that).
ENTRYPOINT ["/usr/bin/tini", "--", "/usr/local/bin/everestctl-api"]
CMD ["serve"]
