#!/usr/bin/env bash
# Installs the Debian packages ulp needs to build, test and benchmark.
# Idempotent: installs only what is missing; runs apt-get update only then.
set -euo pipefail

pkgs=(gcc binutils pkg-config meson ninja-build libelf-dev libdw-dev libcapstone-dev
      libsystemd-dev libjson-c-dev systemd util-linux procps gnuplot-nox python3
      systemd-container debootstrap libboost-context1.74.0
      python3-jsonschema python3-prometheus-client
      mandoc man-db bash-completion
      debhelper dpkg-dev fakeroot lintian
      clang libclang-rt-14-dev g++
      libc6-dev
      make patch
      ansible-core)

missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep 'install ok installed' >/dev/null || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "setup-deps: installing ${missing[*]}" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
