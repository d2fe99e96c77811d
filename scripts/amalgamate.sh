#!/usr/bin/env bash
# Generates single_include/llm_stream/llm_stream.hpp from llm_stream.hpp.
#   scripts/amalgamate.sh          write the generated file
#   scripts/amalgamate.sh --check  exit 1 when the generated file is missing or stale
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source_file="$root/llm_stream.hpp"
output_rel="single_include/llm_stream/llm_stream.hpp"
output="$root/$output_rel"

generate() {
    echo "// generated from llm_stream.hpp by scripts/amalgamate.sh — do not edit"
    cat "$source_file"
}

case "${1:-}" in
    "")
        mkdir -p "$(dirname "$output")"
        generate > "$output.tmp"
        mv "$output.tmp" "$output"
        echo "wrote $output_rel"
        ;;
    --check)
        if ! generate | cmp -s - "$output"; then
            echo "amalgamate: $output_rel is stale or missing; run scripts/amalgamate.sh and commit it" >&2
            exit 1
        fi
        echo "amalgamate: $output_rel is up to date"
        ;;
    *)
        echo "usage: scripts/amalgamate.sh [--check]" >&2
        exit 2
        ;;
esac
