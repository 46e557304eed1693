# Shared by the deb and rpm maintainer scripts: mkpkg puts this text in
# place of the marker line (at-COMMON-at) of each script, since a maintainer script
# cannot source a file that the package may be removing.
INTERLOCK=/usr/bin/interlock
STATE_DIR=/var/lib/interlock
UNIT=interlock.service

# systemd_running: systemd is PID 1 (not a chroot, a container without it,
# or an image build).
systemd_running() {
	[ -d /run/systemd/system ]
}

# make_state_dir creates the state directory (journal, keys) root-only, or
# tightens an existing one that group or others could write or others read.
make_state_dir() {
	if [ ! -d "$STATE_DIR" ]; then
		mkdir -p "$STATE_DIR"
		chown root:root "$STATE_DIR"
		chmod 0750 "$STATE_DIR"
	else
		chmod go-w,o-rwx "$STATE_DIR"
	fi
}

# first_start enables and starts the service if the config already asks for
# interception (names cgroups and targets); otherwise it says what to do.
first_start() {
	if ! systemd_running; then
		return 0
	fi
	systemctl daemon-reload >/dev/null 2>&1 || true
	if "$INTERLOCK" package-helper should-start --quiet >/dev/null 2>&1; then
		echo "interlock: /etc/interlock/interlock.yaml names cgroups and targets: enabling and starting $UNIT"
		systemctl enable --now "$UNIT" || echo "interlock: could not start $UNIT; see: systemctl status $UNIT" >&2
	else
		echo "interlock: installed, not started. Name the cgroups and targets in"
		echo "  /etc/interlock/interlock.yaml, check with 'interlock doctor', then run"
		echo "  systemctl enable --now $UNIT"
	fi
}

# restart_after_upgrade restarts the service if it runs (its pinned programs
# keep refusing intercepted connects during the restart: no gap).
restart_after_upgrade() {
	if systemd_running; then
		systemctl daemon-reload >/dev/null 2>&1 || true
		systemctl try-restart "$UNIT" || echo "interlock: could not restart $UNIT; see: systemctl status $UNIT" >&2
	fi
}

# stop_and_detach runs before the files are removed (not on upgrade): stop
# and disable the service, then detach its pinned programs, which would
# otherwise refuse every intercepted connect until the next boot.
stop_and_detach() {
	if systemd_running; then
		systemctl disable --now "$UNIT" >/dev/null 2>&1 || true
	elif command -v systemctl >/dev/null 2>&1; then
		systemctl disable "$UNIT" >/dev/null 2>&1 || true
	fi
	if [ -x "$INTERLOCK" ]; then
		"$INTERLOCK" package-helper detach >/dev/null 2>&1 ||
			echo "interlock: could not detach the pinned programs; run 'interlock doctor' and see /usr/share/doc/interlock/install.md" >&2
	fi
}
