# Stand-in for nginxinc/nginx-unprivileged: Debian's nginx run as uid 101 on port 8080, with
# the same layout (/etc/nginx/conf.d/default.conf, /usr/share/nginx/html) and wget for health
# checks.
FROM docker.io/library/debian:bookworm-slim
RUN apt-get update \
    && apt-get install --yes --no-install-recommends nginx-light wget \
    && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* /etc/nginx/conf.d/* \
    && mkdir -p /usr/share/nginx/html \
    && chown -R 101:101 /var/lib/nginx /var/log/nginx /usr/share/nginx/html /etc/nginx/conf.d
COPY nginx.conf /etc/nginx/nginx.conf
USER 101
EXPOSE 8080
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
