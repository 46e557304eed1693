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

AUDIT_GROUP=interlock

# make_audit_group creates the system group whose members may read the
# journal (sessions, replay, export, verify) without root.
make_audit_group() {
	if getent group "$AUDIT_GROUP" >/dev/null 2>&1; then
		return 0
	fi
	if command -v groupadd >/dev/null 2>&1; then
		groupadd --system "$AUDIT_GROUP"
	elif command -v addgroup >/dev/null 2>&1; then
		addgroup --system "$AUDIT_GROUP"
	else
		echo "interlock: no groupadd or addgroup: the audit group $AUDIT_GROUP was not created; only root can read the journal" >&2
	fi
}

# make_state_dir creates the state directory (journal, keys) writable by
# root alone and readable by the audit group, or brings an existing one
# there. The setgid bit makes what the daemon creates in it (the journal
# and its -wal and -shm, 0640) belong to the audit group too; private keys
# stay 0600, readable by root alone. Group or others never write it.
make_state_dir() {
	group=root
	if getent group "$AUDIT_GROUP" >/dev/null 2>&1; then
		group=$AUDIT_GROUP
	fi
	if [ ! -d "$STATE_DIR" ]; then
		mkdir -p "$STATE_DIR"
	fi
	chown "root:$group" "$STATE_DIR"
	chmod 2750 "$STATE_DIR"
	# What an earlier version left root:root becomes readable by the group
	# where its mode says group-readable (the journal, the public key), and
	# never group-writable.
	find "$STATE_DIR" -xdev \( -type f -o -type d \) -exec chgrp "$group" {} + -exec chmod g-w,o-w {} +
}

KNOWN_HOSTS=/etc/ssh/ssh_known_hosts

# trust_ssh_ca puts the @cert-authority line of interlock's SSH host CA
# (created now if absent) in the system known_hosts, so that OpenSSH
# clients accept the host certificates interlock presents for ssh targets.
# Idempotent: the line is added once, and a line of an earlier CA (its
# comment is interlock-ssh-ca) is replaced; the admin's lines stay.
trust_ssh_ca() {
	line=$("$INTERLOCK" ssh-ca host 2>/dev/null) || {
		echo "interlock: could not create the SSH host CA; add its line later: interlock ssh-ca host >> $KNOWN_HOSTS" >&2
		return 0
	}
	if [ -f "$KNOWN_HOSTS" ] && grep -qxF "$line" "$KNOWN_HOSTS"; then
		return 0
	fi
	mkdir -p "$(dirname "$KNOWN_HOSTS")"
	untrust_ssh_ca
	echo "$line" >>"$KNOWN_HOSTS"
	chmod 0644 "$KNOWN_HOSTS"
}

# untrust_ssh_ca removes the lines trust_ssh_ca added.
untrust_ssh_ca() {
	if [ -f "$KNOWN_HOSTS" ]; then
		sed -i '/^@cert-authority [^ ]* [^ ]* [^ ]* interlock-ssh-ca$/d' "$KNOWN_HOSTS"
	fi
}

# first_start enables and starts the service if the config already asks for
# interception (names cgroups and targets); otherwise it says what to do.
first_start() {
	if ! systemd_running; then
		echo "interlock: installed, not started (this host does not run systemd). Name the cgroups"
		echo "  and targets in /etc/interlock/interlock.yaml, check with 'interlock doctor', then"
		echo "  start 'interlock daemon' as root from your init system or supervisor; or intercept"
		echo "  one command: interlock run -- CMD. See /usr/share/doc/interlock/install.md"
		audit_group_hint
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
	audit_group_hint
}

# audit_group_hint says how an auditor reads the journal without root.
audit_group_hint() {
	if getent group "$AUDIT_GROUP" >/dev/null 2>&1; then
		echo "interlock: members of the group $AUDIT_GROUP can read the journal without root"
		echo "  (usermod -aG $AUDIT_GROUP NAME; then interlock sessions list)"
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
