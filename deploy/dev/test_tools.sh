#!/usr/bin/env bash
# `make test`'s setup step: the suite runs promtool, prometheus and docker-compose for real (the alert
# rules' unit tests, the exposition check, a real scrape, the compose file's validation). When one is
# missing, install Debian's packages for them with apt-get, through sudo when not root; when that cannot
# be done, say what to install and fail, rather than let a dozen tests fail one by one.
# It uses only shell builtins, what it installs with (id, sudo, apt-get) and rabbitmqctl, so a test can run it
# on a PATH of stand-ins.
set -euo pipefail

# The Debian packages of the tools not on PATH, space-separated; empty when all are there.
missing_packages() {
  local packages=""
  { command -v promtool && command -v prometheus; } >/dev/null 2>&1 || packages+=" prometheus"
  command -v docker-compose >/dev/null 2>&1 || packages+=" docker-compose"
  printf '%s' "${packages# }"
}

fail() {
  printf 'make test needs the Debian packages %s (promtool, prometheus, docker-compose) and %s.\n' "$1" "$2" >&2
  printf 'Install them yourself: apt-get install %s\n' "$1" >&2
  exit 1
}

# The suite also runs rabbitmqctl against the machine's RabbitMQ (a throwaway vhost per worker test, the broker
# definitions imported for real, the outage test). Debian's rabbitmqctl runs only as root (or rabbitmq), and
# cannot reach a broker that is not running: say so once, here, not in a hundred failed tests.
check_broker_control() {
  local output
  if ! command -v rabbitmqctl >/dev/null 2>&1; then
    printf 'make test needs RabbitMQ on this machine (the suite runs rabbitmqctl): apt-get install rabbitmq-server\n' >&2
    exit 1
  fi
  if ! output=$(rabbitmqctl -q list_vhosts 2>&1); then
    printf 'make test runs rabbitmqctl, which failed here:\n%s\n' "$output" >&2
    printf 'Start RabbitMQ (rabbitmq-server -detached, or .ci/run, which starts it) and run make test as a user\n' >&2
    printf 'rabbitmqctl accepts: root on Debian (sudo make test), whose rabbitmqctl refuses everyone else.\n' >&2
    exit 1
  fi
}

main() {
  local packages sudo=""
  packages=$(missing_packages)
  [[ -z "$packages" ]] && { check_broker_control; return 0; }
  command -v apt-get >/dev/null 2>&1 || fail "$packages" "apt-get is not available here"
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || fail "$packages" "you are not root and sudo is not installed"
    sudo=sudo
  fi
  printf 'Installing %s with apt-get: the test suite runs them for real\n' "$packages"
  # shellcheck disable=SC2086 # $sudo and $packages split into words on purpose
  $sudo apt-get update -qq || fail "$packages" "apt-get update failed"
  # shellcheck disable=SC2086
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $packages \
    || fail "$packages" "apt-get install failed"
  packages=$(missing_packages)
  [[ -z "$packages" ]] || fail "$packages" "they are still missing after apt-get install"
  check_broker_control
}

main
