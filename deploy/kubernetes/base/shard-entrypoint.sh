#!/bin/sh
# One imapmirror shard: find this pod's shard, (re)state the endpoints and the batch, then
# serve. Every step is safe to repeat (`--if-exists update`), so a restarted pod resumes
# where it stopped: the state directory on its volume remembers what was copied.
#
# The shard index comes from the pod: JOB_COMPLETION_INDEX under an Indexed Job, else the
# StatefulSet ordinal at the end of the hostname (imapmirror-3 -> 3). The shard count comes
# from the manifest (IMAPMIRROR_SHARD_COUNT, equal to replicas/completions).
#
# Settings (the imapmirror-settings ConfigMap):
#   IMAPMIRROR_SHARD_COUNT   number of shards (= replicas)
#   IMAPMIRROR_BATCH         batch name
#   SOURCE_ENDPOINT_ARGS     `endpoint add` options of the source, e.g. "--host imap.old.example --security ssl --admin-user admin --admin-format dovecot"
#   TARGET_ENDPOINT_ARGS     the same for the target
#   BATCH_ARGS               further `batch add` options, e.g. "--sync-interval 24h --exclude Junk"
#   IMAPMIRROR_HTTP_PORT     status/metrics port (default 9898; IMAPMIRROR_HTTP_ADDR sets the whole address)
# Secrets (files in IMAPMIRROR_SECRETS_DIR, from the imapmirror-secrets Secret):
#   migration.csv            the migration file (it holds passwords, hence a Secret)
#   source-admin-password    optional: the source endpoint's admin password
#   target-admin-password    optional: the target endpoint's admin password
#   http-token               optional: the token the status pages and /metrics require
set -eu

fail() {
    echo "imapmirror-shard: $*" >&2
    exit 2
}

secrets="${IMAPMIRROR_SECRETS_DIR:-/run/secrets/imapmirror}"
index="${JOB_COMPLETION_INDEX:-${HOSTNAME##*-}}"
count="${IMAPMIRROR_SHARD_COUNT:-}"
case "$index" in
    '' | *[!0-9]*) fail "cannot tell this pod's shard index: HOSTNAME=${HOSTNAME:-} does not end in -ORDINAL and JOB_COMPLETION_INDEX is not set; run it as a StatefulSet or an Indexed Job." ;;
esac
case "$count" in
    '' | *[!0-9]* | 0) fail "IMAPMIRROR_SHARD_COUNT='$count' is not a positive number: set it in the imapmirror-settings ConfigMap to the StatefulSet's replicas." ;;
esac
if [ "$index" -ge "$count" ]; then
    fail "this pod is shard $index but IMAPMIRROR_SHARD_COUNT is $count: set replicas and IMAPMIRROR_SHARD_COUNT to the same number (never change it during a migration)."
fi
: "${IMAPMIRROR_BATCH:?set IMAPMIRROR_BATCH (the batch name) in the imapmirror-settings ConfigMap}"
: "${SOURCE_ENDPOINT_ARGS:?set SOURCE_ENDPOINT_ARGS (endpoint add options of the source) in the imapmirror-settings ConfigMap}"
: "${TARGET_ENDPOINT_ARGS:?set TARGET_ENDPOINT_ARGS (endpoint add options of the target) in the imapmirror-settings ConfigMap}"
[ -r "$secrets/migration.csv" ] || fail "the migration file $secrets/migration.csv is missing: put it into the imapmirror-secrets Secret as migration.csv."

export IMAPMIRROR_SHARD="$index/$count"
echo "imapmirror-shard: shard $IMAPMIRROR_SHARD of batch $IMAPMIRROR_BATCH, state in ${IMAPMIRROR_STATE_DIR:-the default directory}" >&2

password_option() {
    if [ -r "$secrets/$1" ]; then
        echo "--admin-password-file $secrets/$1"
    fi
}

# The option strings are split into words on purpose (no quotes): they hold several options.
# shellcheck disable=SC2086
imapmirror endpoint add source $SOURCE_ENDPOINT_ARGS $(password_option source-admin-password) --if-exists update
# shellcheck disable=SC2086
imapmirror endpoint add target $TARGET_ENDPOINT_ARGS $(password_option target-admin-password) --if-exists update
# shellcheck disable=SC2086
imapmirror batch add "$IMAPMIRROR_BATCH" --csv "$secrets/migration.csv" \
    --source source --target target ${BATCH_ARGS:-} --if-exists update --start

http="${IMAPMIRROR_HTTP_ADDR:-0.0.0.0:${IMAPMIRROR_HTTP_PORT:-9898}}"
if [ -r "$secrets/http-token" ]; then
    exec imapmirror serve --http "$http" --http-token-file "$secrets/http-token"
fi
exec imapmirror serve --http "$http"
