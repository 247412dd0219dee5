#!/usr/bin/env bash
# shipgate's gate, from a deploying job (deploy mode `workflow`): asks POST /gate/wait with the
# job's OIDC token until the gate is open (exit 0), denied (exit 1) or the time-out passes
# (exit 1). Needs only what GitHub's runners have: bash, curl, jq.
#   SHIPGATE_URL               where the App answers
#   SHIPGATE_AUDIENCE          the token's audience (default shipgate)
#   SHIPGATE_TIMEOUT_MINUTES   give up after this long (default 60; or SHIPGATE_TIMEOUT_SECONDS)
#   SHIPGATE_POLL_SECONDS      how long each call waits for a decision (default and at most 50)
set -euo pipefail

url="${SHIPGATE_URL:?set the shipgate-url input}"
url="${url%/}"
audience="${SHIPGATE_AUDIENCE:-shipgate}"
timeout="${SHIPGATE_TIMEOUT_SECONDS:-$(( ${SHIPGATE_TIMEOUT_MINUTES:-60} * 60 ))}"
poll="${SHIPGATE_POLL_SECONDS:-50}"
[ "$poll" -gt 50 ] && poll=50

if [ -z "${ACTIONS_ID_TOKEN_REQUEST_URL:-}" ] || [ -z "${ACTIONS_ID_TOKEN_REQUEST_TOKEN:-}" ]; then
  echo "::error::no OIDC token for this job: give it 'permissions: id-token: write'"
  exit 1
fi

deadline=$(( $(date +%s) + timeout ))
said=""
while :; do
  sep='&'; case "$ACTIONS_ID_TOKEN_REQUEST_URL" in *\?*) ;; *) sep='?';; esac
  token="$(curl -sSf -H "Authorization: bearer ${ACTIONS_ID_TOKEN_REQUEST_TOKEN}" \
    "${ACTIONS_ID_TOKEN_REQUEST_URL}${sep}audience=${audience}" | jq -r '.value')"
  left=$(( deadline - $(date +%s) ))
  wait=$(( left < poll ? (left > 0 ? left : 0) : poll ))
  response="$(curl -sS -w '\n%{http_code}' -X POST "${url}/gate/wait" \
    -H "Authorization: Bearer ${token}" -H 'Content-Type: application/json' \
    --data "{\"wait_seconds\": ${wait}}" || printf '\n000')"
  code="${response##*$'\n'}"
  body="${response%$'\n'*}"
  case "$code" in
    200) ;;
    000|5??)
      echo "shipgate did not answer (HTTP ${code}); asking again"
      if [ "$(date +%s)" -ge "$deadline" ]; then echo "::error::shipgate: timed out"; exit 1; fi
      sleep 5
      continue ;;
    *)
      echo "::error::shipgate refused this job (HTTP ${code}): $(jq -r '.reason // .' <<<"$body" 2>/dev/null || echo "$body")"
      exit 1 ;;
  esac
  state="$(jq -r '.state' <<<"$body")"
  request="$(jq -r '.request // empty' <<<"$body")"
  case "$state" in
    open)
      echo "shipgate: the gate is open${request:+ (deployment request #${request})}: $(jq -r '.message // ""' <<<"$body")"
      exit 0 ;;
    denied)
      echo "::error::shipgate: denied${request:+ (deployment request #${request})}: $(jq -r '.message // ""' <<<"$body")"
      exit 1 ;;
    waiting)
      now_said="$(jq -r '.missing[]? | "  - " + .' <<<"$body")"
      if [ "$now_said" != "$said" ]; then
        echo "shipgate: waiting${request:+ on deployment request #${request}} for:"
        echo "$now_said"
        said="$now_said"
      fi
      # A freeze window that ends after this job's time-out: no use waiting for it.
      until="$(jq -r '.until // empty' <<<"$body")"
      if [ -n "$until" ]; then
        until_epoch="$(jq -r '.until | fromdateiso8601' <<<"$body")"
        if [ "$until_epoch" -gt "$deadline" ]; then
          echo "::error::shipgate: frozen until ${until}, after this job's time-out (${timeout}s)"
          exit 1
        fi
      fi ;;
    *)
      echo "::error::shipgate answered something unexpected: $body"
      exit 1 ;;
  esac
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "::error::shipgate: the gate is still closed after ${timeout}s"
    exit 1
  fi
done
