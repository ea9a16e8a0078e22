#!/bin/sh
# The image's entry point: `crawl <spider> [args]` runs scrapy crawl; `work`, `status`, `es-setup`,
# any other word or an option runs `python -m processing ...`; a command on PATH (scrapy, python,
# ray, sh) runs as given.
set -e
case "${1:-}" in
  crawl) shift; exec scrapy crawl "$@" ;;
  "") exec python -m processing --help ;;
esac
case "$(command -v "$1" 2>/dev/null)" in
  /*) exec "$@" ;;  # a program on PATH (not a shell builtin such as `export`)
esac
exec python -m processing "$@"
