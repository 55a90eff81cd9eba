#!/bin/sh
# Generalize this machine before it is captured, so every instance booted from
# the image gets its own identity. One script, not one Ansible task per step:
# under emulation each task costs 5-10 s of Python start-up on the guest.
# Usage: seal.sh "<steps to skip>" "<build key base64 blob>" "<build user>" "<host key blobs>"
# (lists space separated). Runs as root (through sudo when the build user is not root).
set -eu
SKIP=" ${1:-} "
BUILD_KEY_BLOB="${2:-}"
BUILD_USER="${3:-}"  # imgpipe's temporary user, deleted here; empty: none
HOST_KEY_BLOBS="${4:-}"
BUILD_HOSTNAME=$(hostname)

homes() {  # every user's home, once
  getent passwd | cut -d: -f6 | sort -u
}

want() {
  case "$SKIP" in *" $1 "*) echo "seal: skip $1"; return 1 ;; esac
  echo "seal: $1"
}

# Always, whatever is skipped: the host keys imgpipe injected (their private halves
# passed through imgpipe's hands) and the cloud-init user data that carried them.
for pub in /etc/ssh/ssh_host_*_key.pub; do
  [ -f "$pub" ] || continue
  blob=$(cut -d' ' -f2 "$pub")
  case " $HOST_KEY_BLOBS " in *" $blob "*) rm -f "$pub" "${pub%.pub}" ;; esac
done
for dir in /var/lib/cloud/instances/*; do
  [ -d "$dir" ] || continue
  rm -f "$dir"/user-data.txt* "$dir"/vendor-data*.txt* "$dir"/cloud-config.txt "$dir"/obj.pkl
done

if want cloud_init && command -v cloud-init >/dev/null 2>&1; then
  cloud-init clean --logs --seed || echo "seal: cloud-init clean failed (ignored)"
fi

if want machine_id; then
  : > /etc/machine-id
  [ -L /var/lib/dbus/machine-id ] || rm -f /var/lib/dbus/machine-id
  # Stopping the unit saves a seed now, so it does not save one at power-off.
  systemctl stop systemd-random-seed.service 2>/dev/null || true
  rm -f /var/lib/systemd/random-seed /var/lib/systemd/credential.secret
fi

if want ssh_host_keys; then
  rm -f /etc/ssh/ssh_host_*
fi

if want hostname; then
  echo localhost > /etc/hostname
  if [ "$BUILD_HOSTNAME" != localhost ] && [ -f /etc/hosts ]; then
    # cloud-init's manage_etc_hosts writes "127.0.1.1 <fqdn> <hostname>"
    awk -v h="$BUILD_HOSTNAME" '{ for (i = 2; i <= NF; i++) if ($i == h || index($i, h ".") == 1) next } { print }' \
      /etc/hosts > /etc/hosts.imgpipe && cat /etc/hosts.imgpipe > /etc/hosts
    rm -f /etc/hosts.imgpipe
  fi
fi

if want build_key && [ -n "$BUILD_KEY_BLOB" ]; then
  homes | while read -r home; do
    keys="$home/.ssh/authorized_keys"
    [ -f "$keys" ] || continue
    grep -vF -- "$BUILD_KEY_BLOB" "$keys" > "$keys.imgpipe" || true
    if grep -q '[^[:space:]]' "$keys.imgpipe"; then
      cat "$keys.imgpipe" > "$keys"
    else
      rm -f "$keys"
    fi
    rm -f "$keys.imgpipe"
  done
  if [ -n "$BUILD_USER" ] && [ "$BUILD_USER" != root ] && getent passwd "$BUILD_USER" >/dev/null; then
    # The SSH session running this script stays up; no new login is possible.
    userdel --force --remove "$BUILD_USER" 2>/dev/null || userdel --force "$BUILD_USER"
    rm -rf "/home/$BUILD_USER"
    for rules in /etc/sudoers.d/*; do
      [ -f "$rules" ] || continue
      grep -v -e "^$BUILD_USER[[:space:]]" -e "^# User rules for $BUILD_USER\$" "$rules" > "$rules.imgpipe" || true
      if grep -q '^[^#[:space:]]' "$rules.imgpipe"; then
        cat "$rules.imgpipe" > "$rules"
      else
        rm -f "$rules"
      fi
      rm -f "$rules.imgpipe"
    done
  fi
fi

if want shell_history; then
  homes | while read -r home; do
    rm -f "$home/.bash_history" "$home/.lesshst" "$home/.viminfo" "$home/.python_history" "$home/.sh_history"
  done
fi

if want package_cache; then
  command -v apt-get >/dev/null 2>&1 && apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
fi

if want dhcp_leases; then
  rm -rf /var/lib/dhcp/* /var/lib/systemd/network/* /run/systemd/netif/leases/*
fi

if want temp_files; then
  find /tmp /var/tmp -mindepth 1 -maxdepth 1 -exec rm -rf {} +
  # Ansible's own remote temp dir; this script runs from it, which is fine once it is open.
  rm -rf /root/.ansible
fi

if want logs; then
  journalctl --rotate >/dev/null 2>&1 || true
  # journald moves to /run until power-off, so it recreates no directory named after
  # the build's machine-id under /var/log/journal
  journalctl --relinquish-var >/dev/null 2>&1 || true
  rm -rf /var/log/journal/*
  find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
  find /var/log -type f -exec truncate -s 0 {} +
fi

if want trim; then
  sync
  fstrim --all --verbose || echo "seal: fstrim failed (ignored; the image may be larger)"
fi
echo "seal: done"
