#!/usr/bin/env bash
# The servers remitflow's continuous mode uses, on loopback: Kafka (scripts/kafka.sh) and Redis
# (scripts/redis.sh). Same environment variables as those scripts.
#
#   scripts/services.sh start|stop|status
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

case ${1:-} in
  start)
    bash "$HERE/redis.sh" start
    bash "$HERE/kafka.sh" start
    ;;
  stop)
    # Stop both even when one fails; report the failure afterwards.
    rc=0
    bash "$HERE/kafka.sh" stop || rc=$?
    bash "$HERE/redis.sh" stop || rc=$?
    exit "$rc"
    ;;
  status)
    rc=0
    bash "$HERE/kafka.sh" status || rc=$?
    bash "$HERE/redis.sh" status || rc=$?
    exit "$rc"
    ;;
  *)
    printf 'usage: %s start|stop|status\n' "$0" >&2
    exit 2
    ;;
esac
