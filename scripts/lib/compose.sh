# shellcheck shell=bash
# Shared by scripts/test-compose and scripts/test-partition: sourced after
# `cd` to the repository's root, with NAME set to the script's name.

say() { echo "$NAME: $*" >&2; }
die() {
    echo "$NAME: FAILED: $*" >&2
    exit 1
}

# COMPOSE — `docker compose` (v2) where the plugin is there, else
# docker-compose (v1.29). Exits 0 with a message when no engine answers.
if ! docker info >/dev/null 2>&1; then
    say "skipped: no Docker engine answers (docker info)"
    exit 0
fi
if docker compose version >/dev/null 2>&1; then
    COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
    COMPOSE=(docker-compose)
else
    say "skipped: neither 'docker compose' nor docker-compose is installed"
    exit 0
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# app_copy DIR — what a user's checkout needs for `docker compose up`
# (the compose file, .env.example, deploy/, scripts/new-env), copied to
# DIR, so that a developer's own .env is never touched.
app_copy() {
    mkdir -p "$1/scripts"
    cp -r docker-compose.yml .env.example deploy "$1/"
    rm -rf "$1/deploy/prebuilt"
    cp scripts/new-env "$1/scripts/"
}

# lifted_config OUT [EXTRA_SED...] — deploy/talon.compose.toml with the
# example channels' rate limits lifted (the e-mail's 60 a minute, the
# inbox's default), and nothing else changed but what the extra sed
# expressions change.
lifted_config() {
    local out=$1
    shift
    sed -e 's/^rate_per_minute = 60 /rate_per_minute = 0  /' \
        -e 's/^kind = "inbox"$/kind = "inbox"\nrate_per_minute = 0/' "$@" deploy/talon.compose.toml >"$out"
    [[ $(grep -c '^rate_per_minute = 0 ' "$out") == 2 ]] || die "could not lift the rate limits"
}

# wait_healthy SECONDS HEALTHY — until no container of the project is
# starting, unhealthy, created or restarting and HEALTHY of them are
# running and healthy. Needs a `compose` function.
wait_healthy() {
    local deadline=$((SECONDS + $1)) ids states
    while ((SECONDS < deadline)); do
        ids=$(compose ps -q)
        # shellcheck disable=SC2086
        states=$(docker inspect --format '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' $ids)
        if ! grep -Eq ' (starting|unhealthy)$| (created|restarting) ' <<<"$states" &&
            [[ $(grep -c ' running healthy$' <<<"$states") -ge $2 ]]; then
            return 0
        fi
        sleep 1
    done
    echo "$states" >&2
    die "not every container became healthy within $1 s"
}

# jsz CONTAINER QUERY — nats-server's /jsz, from inside the NATS container.
jsz() { docker exec "$1" wget -q -O - "http://127.0.0.1:8222/jsz?$2"; }

# wait_quiet CONTAINER SECONDS — until no consumer holds a message handed
# out and not acked (scripts/compose_e2e.py quiet).
wait_quiet() {
    local deadline=$((SECONDS + $2)) last
    until last=$(jsz "$1" 'accounts=true&consumers=true' | python3 scripts/compose_e2e.py quiet); do
        ((SECONDS < deadline)) || die "consumers still busy after $2 s: $last"
        sleep 2
    done
}
