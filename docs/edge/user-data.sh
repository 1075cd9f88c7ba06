#!/bin/bash
# User data for a Greenlight HAProxy fleet instance (Amazon Linux 2023 or Debian 12).
# The launch template also needs the stack's EdgeInstanceProfile and the tag
# greenlight:edge-fleet=<EdgeFleetName>. No config is written here: the stack's bootstrap
# association runs the apply document when the instance registers with SSM, and that document
# starts HAProxy once a config has passed its checks (until then the instance fails its load
# balancer health check and takes no traffic).
set -euo pipefail
if command -v dnf >/dev/null; then
  dnf install -y haproxy socat awscli iproute util-linux
else
  apt-get update -q && apt-get install -y -q haproxy socat awscli iproute2 util-linux
fi
systemctl disable --now haproxy.service 2>/dev/null || true # the distribution's own unit
install -d -m 755 /etc/haproxy/greenlight /var/lib/haproxy
install -d -m 700 /etc/haproxy/certs

# Instance-local settings, read by HAProxy (the unit's EnvironmentFile: the config names its
# paths as "${GREENLIGHT_*}" and sets no variable itself) and by the apply document.
# GREENLIGHT_BIND_ADDRESS may pin the listeners to one address (unset: every address).
cat >/etc/haproxy/greenlight/environment <<'ENV'
GREENLIGHT_RUN_DIR=/run/haproxy
GREENLIGHT_STATE_DIR=/var/lib/haproxy
GREENLIGHT_CERTS_DIR=/etc/haproxy/certs
# The stats page listens on 127.0.0.1 unless this names the instance's management address:
# GREENLIGHT_STATS_ADDRESS=10.0.0.10
ENV

# Master-worker HAProxy started from the current release (a symlink the document swaps
# atomically) and reloaded through the master socket by the document.
cat >/etc/systemd/system/greenlight-haproxy.service <<'UNIT'
[Unit]
Description=HAProxy (Greenlight edge)
After=network-online.target
Wants=network-online.target
ConditionPathExists=/etc/haproxy/greenlight/current/haproxy.cfg

[Service]
EnvironmentFile=-/etc/haproxy/greenlight/environment
RuntimeDirectory=haproxy
RuntimeDirectoryPreserve=yes
ExecStart=/usr/sbin/haproxy -Ws -S /run/haproxy/master.sock -p /run/haproxy/haproxy.pid -f /etc/haproxy/greenlight/current/haproxy.cfg -C /etc/haproxy/greenlight/current
ExecReload=/bin/kill -USR2 $MAINPID
KillMode=mixed
Restart=always
RestartSec=2
Type=notify
LimitNOFILE=100000
# Hardening (docs/edge.md, "Instance hardening"). The master starts as root and stays root: it
# reads the config and the root-only certificates, binds the listeners and sockets, and executes
# itself again on each reload. Its workers, which serve, drop to the config's `user`/`group`
# (haproxy). The capabilities are the least that this needs:
#   CAP_NET_BIND_SERVICE  the master binds :80 and :443;
#   CAP_SETUID CAP_SETGID each worker's setgroups, setgid and setuid to haproxy;
#   CAP_KILL              the master signals its workers, whose uid is no longer its own (without
#                         it, old workers never stop after a reload).
# No CAP_DAC_OVERRIDE: every file the master reads is root's own. No AmbientCapabilities: the
# master is root and keeps what the bounding set allows; the workers need no capability at all.
CapabilityBoundingSet=CAP_NET_BIND_SERVICE CAP_SETUID CAP_SETGID CAP_KILL
AmbientCapabilities=
NoNewPrivileges=yes
# Read-only file system but for the runtime directory (sockets, pid file). HAProxy writes
# nothing else: the server-state file in /var/lib/haproxy is written by the apply document.
ProtectSystem=strict
ReadWritePaths=/run/haproxy
ProtectHome=yes
PrivateTmp=yes
PrivateDevices=yes
ProtectKernelTunables=yes
ProtectKernelModules=yes
ProtectKernelLogs=yes
ProtectControlGroups=yes
ProtectClock=yes
ProtectHostname=yes
RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6
RestrictNamespaces=yes
RestrictRealtime=yes
RestrictSUIDSGID=yes
LockPersonality=yes
SystemCallArchitectures=native
SystemCallFilter=@system-service
SystemCallErrorNumber=EPERM
UMask=0077
# Not MemoryDenyWriteExecute: HAProxy compiles its regular expressions with PCRE2's JIT.

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable greenlight-haproxy.service
