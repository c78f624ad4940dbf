#!/usr/bin/env bash
# Vendors the browser assets the app serves itself (no CDN: an intranet deployment must work).
#
# Fetches exact versions from the npm registry with `npm pack`, copies only the files the app needs
# into market/console/static/vendor/<package>/, and records name, version and sha256 (of the npm
# tarball and of every copied file) in market/console/static/vendor/VENDOR.md.
# To upgrade: change a version below, run `bash scripts/vendor_assets.sh`, commit the result.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="$ROOT/market/console/static/vendor"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# package version file... (paths inside the package; each copied flat into vendor/<package>/)
ASSETS=(
  "swagger-ui-dist 5.35.0 swagger-ui-bundle.js swagger-ui.css favicon-32x32.png LICENSE"
  "redoc 2.5.4 bundles/redoc.standalone.js LICENSE"
  "htmx.org 2.0.11 dist/htmx.min.js LICENSE"
  "echarts 6.1.0 dist/echarts.common.min.js LICENSE"
  "codemirror 5.65.21 lib/codemirror.js lib/codemirror.css mode/sql/sql.js LICENSE"
  "axe-core 4.14.1 axe.min.js LICENSE"
)

rm -rf "$DEST"
mkdir -p "$DEST"
{
  echo "# Vendored browser assets"
  echo
  echo "Written by \`scripts/vendor_assets.sh\` (do not edit by hand): each package is fetched from the npm"
  echo "registry with \`npm pack <name>@<version>\` and only the files below are kept. The app serves them"
  echo "under \`/static/vendor/<package>/\`; nothing is loaded from another host."
  echo
  echo "| package | version | used for | npm tarball sha256 |"
  echo "|---|---|---|---|"
} > "$WORK/VENDOR.md"
: > "$WORK/files.md"

purpose() {
  case "$1" in
    swagger-ui-dist) echo "/docs (Swagger UI)" ;;
    redoc) echo "/redoc (ReDoc)" ;;
    htmx.org) echo "console pages" ;;
    echarts) echo "console charts (common build: line, bar, pie, scatter)" ;;
    codemirror) echo "SQL editor (CodeMirror 5: plain script files, no build step)" ;;
    axe-core) echo "accessibility checks in browser tests" ;;
  esac
}

for entry in "${ASSETS[@]}"; do
  read -r name version files <<< "$entry"
  (cd "$WORK" && npm pack "$name@$version" --silent > "$WORK/tarball.txt")
  tarball="$WORK/$(tail -n 1 "$WORK/tarball.txt")"
  mkdir -p "$WORK/$name"
  tar -xzf "$tarball" -C "$WORK/$name"
  mkdir -p "$DEST/$name"
  for file in $files; do
    cp "$WORK/$name/package/$file" "$DEST/$name/$(basename "$file")"
    echo "| \`$name/$(basename "$file")\` | $(sha256sum "$DEST/$name/$(basename "$file")" | cut -d' ' -f1) |" >> "$WORK/files.md"
  done
  echo "| $name | $version | $(purpose "$name") | \`$(sha256sum "$tarball" | cut -d' ' -f1)\` |" >> "$WORK/VENDOR.md"
done

{
  echo
  echo "| file | sha256 |"
  echo "|---|---|"
  cat "$WORK/files.md"
} >> "$WORK/VENDOR.md"
cp "$WORK/VENDOR.md" "$DEST/VENDOR.md"
echo "vendored into $DEST"
