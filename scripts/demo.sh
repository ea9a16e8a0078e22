#!/usr/bin/env bash
# The main job on the embedded default: crawl a small local sample site and a folder, process
# what was queued, and show the catalogue. No Redis, Elasticsearch or GPU needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
export PYTHONPATH="$PWD" DATA_DIR="${DATA_DIR:-$PWD/data}"
unset REDIS_URL ELASTICSEARCH_URL
PORT="${DEMO_PORT:-8765}"
export ALLOW_PRIVATE_NETWORKS="127.0.0.1:$PORT"   # the sample site is on loopback: allow it, and only it
export DOWNLOAD_TIMEOUT=5 RETRY_TIMES=0   # its /fail/slow and refused routes should not hold the demo long
SITE="http://127.0.0.1:$PORT/"

mkdir -p "$DATA_DIR"
echo "== sample site on $SITE"
$PY -m tests.site --port "$PORT" >"$DATA_DIR/site.log" 2>&1 &
site_pid=$!
trap 'kill $site_pid 2>/dev/null || true' EXIT
for _ in $(seq 50); do curl -fs "$SITE" >/dev/null 2>&1 && break; sleep 0.2; done

echo "== scrapy crawl web -a url=$SITE -a depth=2"
.venv/bin/scrapy crawl web -a url="$SITE" -a depth=2 -s SCHEDULER_FLUSH_ON_START=True \
  -O "$DATA_DIR/web-items.jsonl" -s LOG_FILE="$DATA_DIR/crawl-web.log"
echo "== scrapy crawl local -a path=tests/data"
.venv/bin/scrapy crawl local -a path=tests/data -s SCHEDULER_FLUSH_ON_START=True \
  -O "$DATA_DIR/local-items.jsonl" -s LOG_FILE="$DATA_DIR/crawl-local.log"
$PY - <<'PY'
import json, os, collections
for name in ("web-items.jsonl", "local-items.jsonl"):
    path = os.path.join(os.environ["DATA_DIR"], name)
    items = [json.loads(line) for line in open(path)]
    states = collections.Counter(i["status"] for i in items)
    print(f"{name}: {len(items)} videos found: {dict(states)}")
    for i in items:
        why = "; ".join(f"{k}={v}" for k, v in i["errors"].items())
        print(f"  {i['status']:<9} {i['url'][:70]:<70} {why[:60]}")
PY

echo "== python -m processing work --until-empty"
$PY -m processing work --until-empty
echo "== python -m processing status"
$PY -m processing status
echo "== python -m processing search \"bow tie\"   (an ImageNet label of the carphone clip)"
$PY -m processing search "bow tie"
echo "== python -m processing search \"thanks for watching\"   (text the OCR labeler read in a clip)"
$PY -m processing search "thanks for watching"
echo
echo "Crawl logs: $DATA_DIR/crawl-web.log, $DATA_DIR/crawl-local.log; feeds: $DATA_DIR/*-items.jsonl"
echo "Search page: SEARCH_MEDIA_ROOTS=$PWD/tests/data .venv/bin/python -m processing serve --port 8000   (then open http://127.0.0.1:8000)"
echo "  (videos are served only from FILES_STORE and SEARCH_MEDIA_ROOTS: the local crawl left its files in tests/data)"
echo "Stop the embedded Redis with: make stop"
