# shellcheck shell=bash
# SPDX-License-Identifier: LGPL-2.1-or-later
# What the tests under a real systemd share (tests/system/test-nspawn.sh,
# tests/debian/test-deb-nspawn.sh), sourced after tests/lib.sh:
#
#   nspawn_cached_root   sets root: a Debian 12 root (debootstrap --variant=minbase with
#                        the libraries ulp needs), built once and cached under
#                        ULP_NSPAWN_CACHE (default /var/cache/ulp-test), keyed by its
#                        package list; skips (counted) when the archive cannot be reached.
#                        ULP_DEBIAN_MIRROR: the archive (default: the host's own mirror).
#   nspawn_boot LOG      boots it (a throwaway overlay) as machine $machine, the console
#                        in LOG; sets nspawn_pid and leader (the container's systemd) and
#                        waits until it runs.
#   inside CMD...        runs CMD in the container.
#   nspawn_poweroff      powers it off (killed after 30 s), whatever state it is in.

nspawn_cached_root() {
	local packages="systemd,systemd-sysv,libelf1,libdw1,libcapstone4,libjson-c5,libsystemd0"
	local cache=${ULP_NSPAWN_CACHE:-/var/cache/ulp-test} key mirror
	key="bookworm-minbase-$(echo "v1 $packages" | md5sum | cut -c1-12)"
	root="$cache/$key"
	mirror=${ULP_DEBIAN_MIRROR:-$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
		/etc/apt/sources.list.d/*.sources 2>/dev/null | grep -v '^[[:space:]]*#' |
		grep -oE 'https?://[^[:space:]]+/debian/?([[:space:]]|$)' | head -n 1 | tr -d '[:space:]' || true)}
	mirror=${mirror:-http://deb.debian.org/debian}
	mkdir -p "$cache"
	exec 9>"$cache/.lock"
	flock -w 600 9 || fail "another run holds $cache/.lock for 10 minutes"
	if [ ! -x "$root/lib/systemd/systemd" ]; then
		echo "building the container root $root from $mirror"
		rm -rf "$root.new"
		if ! timeout 600 debootstrap --variant=minbase --include="$packages" bookworm "$root.new" "$mirror" \
			>"$cache/$key.log" 2>&1; then
			tail -n 20 "$cache/$key.log"
			rm -rf "$root.new"
			skip "debootstrap of Debian 12 from $mirror failed (no network to the archive?), log above"
		fi
		# A root of its own, never booted: the machine id is made at each boot.
		rm -f "$root.new/etc/machine-id"
		mv "$root.new" "$root"
	else
		echo "using the cached root $root"
	fi
	flock -u 9
}

inside() { timeout 120 nsenter -t "$leader" -a "$@"; }

nspawn_boot() {
	local log=$1 i state=
	systemd-nspawn --quiet --boot --directory="$root" --volatile=overlay --register=no --keep-unit \
		--machine="$machine" --console=read-only --capability=all >"$log" 2>&1 &
	nspawn_pid=$!
	for i in $(seq 600); do
		leader=$(pgrep -P "$nspawn_pid" -x systemd || true)
		[ -n "$leader" ] && break
		kill -0 "$nspawn_pid" 2>/dev/null || { cat "$log"; fail "systemd-nspawn exited"; }
		sleep 0.1
	done
	[ -n "$leader" ] || { cat "$log"; fail "no systemd in the container after 60 s"; }
	# Until its manager listens, systemctl cannot connect: retry for 2 minutes.
	for i in $(seq 1200); do
		state=$(inside systemctl is-system-running --wait 2>&1 || true)
		case "$state" in
		running|degraded|stopping|maintenance) break ;;
		esac
		kill -0 "$nspawn_pid" 2>/dev/null || break
		sleep 0.1
	done
	case "$state" in
	running|degraded) ;;
	*) cat "$log"; fail "the container did not boot: $state" ;;
	esac
}

nspawn_poweroff() {
	local i
	if [ -n "${nspawn_pid:-}" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
		[ -z "${leader:-}" ] || timeout 10 nsenter -t "$leader" -a systemctl poweroff --no-block >/dev/null 2>&1 || true
		for i in $(seq 300); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.1; done
		if kill -0 "$nspawn_pid" 2>/dev/null; then
			echo "the container did not power off in 30 s: killing it"
			[ -z "${leader:-}" ] || kill -KILL "$leader" 2>/dev/null || true
			kill -KILL "$nspawn_pid" 2>/dev/null || true
		fi
		wait "$nspawn_pid" 2>/dev/null || true
	fi
	# What systemd-nspawn leaves behind when it is killed.
	rmdir "/run/systemd/nspawn/propagate/$machine" 2>/dev/null || true
}
