#!/usr/bin/env bash
# LocalStack ready hook: create Floe's bucket and metadata table.
# The table definition comes from localstack/table.json (mounted at /etc/floe/table.json by
# docker-compose.yml), the single source that `floe init` and the IaC template mirror.
# Idempotent: existing bucket/table are left as they are.
#
# Outside the container (e.g. against moto) run it as:
#   AWSLOCAL="aws --endpoint-url http://127.0.0.1:5599" FLOE_TABLE_JSON=localstack/table.json \
#     localstack/init/ready.d/10-floe.sh
set -euo pipefail

AWSLOCAL="${AWSLOCAL:-awslocal}"
TABLE_JSON="${FLOE_TABLE_JSON:-/etc/floe/table.json}"
BUCKET="${FLOE_BUCKET:-floe}"
PYTHON="${PYTHON:-$(command -v python3 || command -v python)}"

[[ -r "$TABLE_JSON" ]] || { echo "10-floe: cannot read $TABLE_JSON" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# Split table.json into the two request bodies the CLI takes (no jq needed).
"$PYTHON" - "$TABLE_JSON" "$tmp" <<'PY'
import json, os, sys
spec = json.load(open(sys.argv[1]))
table = os.environ.get("FLOE_TABLE") or spec["CreateTable"]["TableName"]
spec["CreateTable"]["TableName"] = table
json.dump(spec["CreateTable"], open(os.path.join(sys.argv[2], "create.json"), "w"))
json.dump(spec["UpdateTimeToLive"]["TimeToLiveSpecification"],
          open(os.path.join(sys.argv[2], "ttl.json"), "w"))
open(os.path.join(sys.argv[2], "name"), "w").write(table)
PY
TABLE="$(cat "$tmp/name")"

if $AWSLOCAL s3api head-bucket --bucket "$BUCKET" >/dev/null 2>&1; then
  echo "10-floe: bucket $BUCKET exists"
else
  $AWSLOCAL s3api create-bucket --bucket "$BUCKET" >/dev/null
  echo "10-floe: created bucket $BUCKET"
fi

if $AWSLOCAL dynamodb describe-table --table-name "$TABLE" >/dev/null 2>&1; then
  echo "10-floe: table $TABLE exists"
else
  $AWSLOCAL dynamodb create-table --cli-input-json "file://$tmp/create.json" >/dev/null
  $AWSLOCAL dynamodb wait table-exists --table-name "$TABLE"
  echo "10-floe: created table $TABLE"
fi
$AWSLOCAL dynamodb update-time-to-live --table-name "$TABLE" \
  --time-to-live-specification "file://$tmp/ttl.json" >/dev/null 2>&1 \
  || echo "10-floe: TTL already set on $TABLE"
echo "10-floe: TTL on $TABLE: $($AWSLOCAL dynamodb describe-time-to-live --table-name "$TABLE" \
  --query 'TimeToLiveDescription.[AttributeName,TimeToLiveStatus]' --output text)"
