# Stand-in for motoserver/moto:<version>: the same moto release from PyPI, started the way
# that image starts it (MOTO_PORT, default 5000, on every address).
FROM docker.io/library/debian:bookworm-slim
ARG MOTO_VERSION
RUN apt-get update \
    && apt-get install --yes --no-install-recommends ca-certificates python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/moto \
    && /opt/moto/bin/pip install --no-cache-dir --disable-pip-version-check \
        --cert /etc/ssl/certs/ca-certificates.crt "moto[server]==${MOTO_VERSION}"
ENV MOTO_PORT=5000
EXPOSE 5000
ENTRYPOINT ["/opt/moto/bin/moto_server", "-H", "0.0.0.0"]
