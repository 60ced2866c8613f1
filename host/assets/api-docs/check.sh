#!/usr/bin/env bash
# Checks that vendor/ holds exactly the files of the swagger-ui-dist version pinned in
# package-lock.json: `npm ci` downloads that version and verifies its sha512 against the
# lock's integrity field, then every vendored file must equal the package's copy byte for
# byte. Run by .ci/run; after changing the pinned version, run `npm install` here and copy
# the files again (see README.md beside this script).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
cp "$here/package.json" "$here/package-lock.json" "$work/"
# --ignore-scripts: nothing of the package runs here, and the browser never loads its
# install-time telemetry dependency.
(cd "$work" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
version=$(node -p "require('$work/node_modules/swagger-ui-dist/package.json').version")
count=0
for file in "$here"/vendor/*; do
  name=$(basename "$file")
  if ! cmp -s "$file" "$work/node_modules/swagger-ui-dist/$name"; then
    echo "host/assets/api-docs/vendor/$name differs from swagger-ui-dist@$version" >&2
    exit 1
  fi
  count=$((count + 1))
done
echo "api docs: $count vendored files match swagger-ui-dist@$version (integrity checked by npm ci)"
