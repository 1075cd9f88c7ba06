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

# Instance-local settings, read by HAProxy (presetenv defaults in the config) and by the
# apply document. GREENLIGHT_BIND_ADDRESS may pin the listeners to one address.
cat >/etc/haproxy/greenlight/environment <<'ENV'
GREENLIGHT_RUN_DIR=/run/haproxy
GREENLIGHT_STATE_DIR=/var/lib/haproxy
GREENLIGHT_CERTS_DIR=/etc/haproxy/certs
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

[Install]
WantedBy=multi-user.target
UNIT
systemctl daemon-reload
systemctl enable greenlight-haproxy.service
