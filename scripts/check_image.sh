#!/usr/bin/env bash
# Builds the CPU image from scratch and checks it the way a deployer would meet it:
#   1. `pathorag demo` inside a container with no network (offline: MiniLM ships in a package);
#   2. the server container with an API key: the healthcheck turns healthy, the process runs as the
#      non-root user, a book is uploaded and indexed, /v1/ask answers with citations;
#   3. the container restarted on the same volume: the book and its pages are still there.
# Prints the build time and the image size; exits non-zero at the first failed check.
#
# usage: scripts/check_image.sh            (as root, or a user who may use docker)
# Environment (all optional):
#   PYTHON_IMAGE   base image; default python:3.11-slim, or, when that cannot be pulled, a Debian
#                  bookworm base made here with debootstrap and `docker import` (local/python:3.11-bookworm)
#   TORCH_INDEX_URL  the PyTorch CPU index; set empty (the default when it is unreachable) to take torch
#                  from docker/wheels (filled from pip's find-links, e.g. /opt/wheels) or the package index
#   CA_BUNDLE      a CA bundle for pip in the builder stage (default: $PIP_CERT when set); never in the image
#   IMAGE          the tag to build (default pathorag:cpu-check); BUILD=0 checks that image as it is
# Starts dockerd when no engine answers and it is installed (Debian: apt-get install docker.io).
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE=${IMAGE:-pathorag:cpu-check}
NAME=pathorag-check-$$
VOLUME=pathorag-check-data-$$
DEMO_VOLUME=pathorag-check-demo-$$
KEY=check-user-key
ADMIN_KEY=check-admin-key

say() { printf '\n== %s\n' "$*"; }
fail() { printf 'FAILED: %s\n' "$*" >&2; exit 1; }

cleanup() {
  if [ -n "${COMPOSE_DIR:-}" ]; then compose down -v >/dev/null 2>&1 || true; rm -rf "$COMPOSE_DIR"; fi
  docker rm -f "$NAME" >/dev/null 2>&1 || true
  docker volume rm -f "$VOLUME" "$DEMO_VOLUME" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 143' TERM INT  # a time limit (CI's timeout) still removes the containers and volumes

engine() {
  docker info >/dev/null 2>&1 && return
  command -v dockerd >/dev/null || fail "no Docker engine answers and dockerd is not installed (apt-get install docker.io)"
  say "starting dockerd"
  (dockerd >/tmp/pathorag-dockerd.log 2>&1 &)
  for _ in $(seq 60); do docker info >/dev/null 2>&1 && return; sleep 1; done
  fail "dockerd did not start (see /tmp/pathorag-dockerd.log)"
}

base_image() {
  if [ -n "${PYTHON_IMAGE:-}" ]; then echo "$PYTHON_IMAGE"; return; fi
  if docker image inspect python:3.11-slim >/dev/null 2>&1 || timeout 60 docker pull -q python:3.11-slim >/dev/null 2>&1; then
    echo python:3.11-slim; return
  fi
  local local_base=local/python:3.11-bookworm
  if ! docker image inspect "$local_base" >/dev/null 2>&1; then
    command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
    local root; root=$(mktemp -d)
    debootstrap --variant=minbase --include=python3.11,python3.11-venv,python3-pip,ca-certificates \
      bookworm "$root" http://deb.debian.org/debian >/dev/null
    tar -C "$root" -c . | docker import - "$local_base" >/dev/null
    rm -rf "$root"
  fi
  echo "$local_base"
}

reachable() { timeout 10 python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=8)" "$1" >/dev/null 2>&1; }

build() {
  local base torch_index
  base=$(base_image)
  if [ -n "${TORCH_INDEX_URL+set}" ]; then torch_index=$TORCH_INDEX_URL
  elif reachable https://download.pytorch.org/whl/cpu/; then torch_index=https://download.pytorch.org/whl/cpu
  else torch_index=""; fi
  rm -f docker/wheels/*.whl docker/build-ca.crt
  if [ -z "$torch_index" ]; then
    for dir in ${PIP_FIND_LINKS:-}; do cp "$dir"/torch-2.13.0*cpu*.whl docker/wheels/ 2>/dev/null || true; done
  fi
  local ca=${CA_BUNDLE:-${PIP_CERT:-}}
  [ -n "$ca" ] && cp "$ca" docker/build-ca.crt
  say "building $IMAGE on $base (torch index: ${torch_index:-none, wheels: $(ls docker/wheels | tr '\n' ' ')})"
  local started=$SECONDS
  docker build --no-cache -q -t "$IMAGE" --build-arg PYTHON_IMAGE="$base" \
    --build-arg TORCH_INDEX_URL="$torch_index" . >/dev/null
  BUILD_SECONDS=$((SECONDS - started))
  rm -f docker/wheels/*.whl docker/build-ca.crt
  IMAGE_BYTES=$(docker image inspect -f '{{.Size}}' "$IMAGE")
}

api() {  # api METHOD PATH [curl args...]: the JSON body; fails on a non-2xx status
  local method=$1 path=$2; shift 2
  curl -sS --fail-with-body -X "$method" "http://$ADDRESS:8000$path" "$@"
}

address() { docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }

wait_healthy() {  # wait_healthy CONTAINER
  for _ in $(seq 60); do
    case $(docker inspect -f '{{.State.Health.Status}}' "$1") in
      healthy) return ;;
      unhealthy) docker logs "$1" | tail -20; fail "the healthcheck says unhealthy" ;;
    esac
    sleep 3
  done
  docker logs "$1" | tail -20
  fail "not healthy after 3 minutes"
}

ask_with_citations() {
  local body
  body=$(api POST /v1/ask -H "Authorization: Bearer $KEY" -H 'Content-Type: application/json' \
    -d '{"question": "What are Reed-Sternberg cells?"}')
  python3 -c 'import json, sys; cited = json.loads(sys.argv[1])["citations"]
assert cited, "no citations"
print("   /v1/ask cited:", ", ".join("%s p. %s" % (c["title"], c["page_label"] or c["page"]) for c in cited[:3]))' "$body" \
    || fail "/v1/ask gave no citations: $body"
}

engine
if [ "${BUILD:-1}" = 0 ]; then  # check an image built before
  BUILD_SECONDS=0; IMAGE_BYTES=$(docker image inspect -f '{{.Size}}' "$IMAGE")
else
  build
fi
printf '   build %d s, image %d MB\n' "$BUILD_SECONDS" $((IMAGE_BYTES / 1000000))

say "pathorag demo, no network"
docker run --rm --network none -e HF_HUB_OFFLINE=1 -v "$DEMO_VOLUME:/data" "$IMAGE" demo >/tmp/pathorag-check-demo.log 2>&1 \
  || { tail -20 /tmp/pathorag-check-demo.log; fail "pathorag demo"; }
grep -q "Cited pages:" /tmp/pathorag-check-demo.log || fail "the demo cited no pages"
grep -q "Demo done" /tmp/pathorag-check-demo.log || fail "the demo did not finish"
echo "   demo answered its sample questions with cited pages"

say "server container"
docker run -d --name "$NAME" -v "$VOLUME:/data" -e HF_HUB_OFFLINE=1 -e PATHORAG_PAGE_ENCODER=none \
  -e PATHORAG_API_KEYS="$KEY" -e PATHORAG_ADMIN_API_KEYS="$ADMIN_KEY" "$IMAGE" >/dev/null
ADDRESS=$(address "$NAME")
wait_healthy "$NAME"
echo "   healthy at $ADDRESS"
[ "$(docker exec "$NAME" id -u)" = 10001 ] || fail "the server does not run as the pathorag user (uid 10001)"
echo "   runs as uid 10001"
code=$(curl -s -o /dev/null -w '%{http_code}' "http://$ADDRESS:8000/v1/books")
[ "$code" = 401 ] || fail "/v1/books without a key answered $code, not 401"

job=$(api POST /v1/books -H "Authorization: Bearer $ADMIN_KEY" -F "file=@corpora/demo_atlas.pdf" -F "title=Demo atlas")
job_id=$(python3 -c 'import json, sys; print(json.loads(sys.argv[1])["job_id"])' "$job")
for _ in $(seq 120); do
  status=$(api GET "/v1/jobs/$job_id" -H "Authorization: Bearer $KEY" | python3 -c 'import json, sys; print(json.load(sys.stdin)["status"])')
  case $status in done) break ;; failed) fail "indexing job failed" ;; esac
  sleep 2
done
[ "$status" = done ] || fail "indexing did not finish in 4 minutes (status $status)"
echo "   uploaded book indexed (job $job_id)"
ask_with_citations

say "restart on the same volume"
docker restart "$NAME" >/dev/null
ADDRESS=$(address "$NAME")
wait_healthy "$NAME"
books=$(api GET /v1/books -H "Authorization: Bearer $KEY")
python3 -c 'import json, sys; b = json.loads(sys.argv[1])["books"]
assert [x["status"] for x in b] == ["complete"], b' "$books" || fail "the book did not survive the restart: $books"
ask_with_citations
echo "   the book and its pages survived the restart"

say "docker-compose: the file validates, and the pathorag service runs alone on the embedded engine"
command -v docker-compose >/dev/null || fail "docker-compose is not installed (Debian: apt-get install docker-compose)"
COMPOSE_DIR=$(mktemp -d)
cp docker-compose.yml "$COMPOSE_DIR/"
cp .env.example "$COMPOSE_DIR/.env"
# Only the pathorag service: Qdrant's and vLLM's images cannot be pulled on an air-gapped machine,
# so their URLs are emptied (the embedded engine, evidence-only answers, no page encoder).
cat > "$COMPOSE_DIR/embedded.yml" <<YAML
services:
  pathorag:
    image: $IMAGE
    environment:
      PATHORAG_QDRANT_URL: ""
      PATHORAG_VLM_BASE_URL: ""
      PATHORAG_PAGE_ENCODER_URL: ""
      PATHORAG_PAGE_ENCODER: none
      PATHORAG_API_KEYS: $KEY
      PATHORAG_ADMIN_API_KEYS: $ADMIN_KEY
      HF_HUB_OFFLINE: "1"
YAML
compose() { docker-compose --project-directory "$COMPOSE_DIR" -p "$NAME" -f "$COMPOSE_DIR/docker-compose.yml" -f "$COMPOSE_DIR/embedded.yml" "$@"; }
compose config -q || fail "docker-compose config"
PUBLISHED_PORT=$(python3 -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])") compose up -d --no-deps --no-build pathorag >/dev/null 2>&1 || fail "docker-compose up pathorag"
SERVICE=$(compose ps -q pathorag)
ADDRESS=$(address "$SERVICE")
wait_healthy "$SERVICE"
[ -n "$(docker inspect -f '{{range .Mounts}}{{if eq .Destination "/data"}}{{.Name}}{{end}}{{end}}' "$SERVICE")" ] \
  || fail "the compose service has no volume on /data"
api GET /v1/books -H "Authorization: Bearer $KEY" >/dev/null || fail "the compose service does not answer"
echo "   the pathorag service is healthy with its named data volume"
compose down -v >/dev/null 2>&1
rm -rf "$COMPOSE_DIR"
COMPOSE_DIR=

printf '\nimage check passed: %s, built in %d s, %d MB\n' "$IMAGE" "$BUILD_SECONDS" $((IMAGE_BYTES / 1000000))
