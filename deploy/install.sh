#!/usr/bin/env bash
# Installs autoheal on an EC2 host: the binary, a configuration written from the arguments,
# and the service — the systemd unit (default) or the compose stack. Idempotent: run it again
# with the same arguments and nothing changes; an existing configuration is kept unless
# --force-config. Usable as EC2 user data (runs as root).
#
#   deploy/install.sh --account-id 123456789012 [--region us-east-1] [--name production-aws]
#       [--auth instance_role|oidc] [--role-arn ARN] [--external-id ID]
#           (recommended with instance_role: --role-arn of a same-account read-only role, the
#            two-role layout; each sandbox then gets its own narrowed STS session)
#       [--issuer URL --tenant-slug SLUG]            # with --auth oidc
#       [--method systemd|compose] [--binary PATH] [--root DIR] [--no-start] [--force-config]
#
# --root DIR installs under DIR instead of / (for images and tests); --no-start writes the
# files but does not enable or start anything.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(dirname "$HERE")"

method=systemd
binary=""
root=""
start=true
force_config=false
name=production-aws
account_id=""
region=us-east-1
auth=instance_role
role_arn=""
external_id=""
issuer=""
tenant_slug=""

die() { echo "install.sh: $*" >&2; exit 64; }
say() { echo "install.sh: $*"; }

while (($#)); do
  case "$1" in
    --method) method="${2:-}"; shift ;;
    --binary) binary="${2:-}"; shift ;;
    --root) root="${2:-}"; shift ;;
    --no-start) start=false ;;
    --force-config) force_config=true ;;
    --name) name="${2:-}"; shift ;;
    --account-id) account_id="${2:-}"; shift ;;
    --region) region="${2:-}"; shift ;;
    --auth) auth="${2:-}"; shift ;;
    --role-arn) role_arn="${2:-}"; shift ;;
    --external-id) external_id="${2:-}"; shift ;;
    --issuer) issuer="${2:-}"; shift ;;
    --tenant-slug) tenant_slug="${2:-}"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) die "unknown argument $1 (see --help)" ;;
  esac
  shift
done

[[ $method == systemd || $method == compose ]] || die "--method must be systemd or compose"
[[ $account_id =~ ^[0-9]{12}$ ]] || die "--account-id must be the 12-digit AWS account ID"
[[ $auth == instance_role || $auth == oidc ]] || die "--auth must be instance_role or oidc"
if [[ $auth == oidc ]]; then
  [[ -n $role_arn && -n $issuer && -n $tenant_slug ]] \
    || die "--auth oidc needs --role-arn, --issuer and --tenant-slug"
fi
if [[ -z $binary ]]; then
  for candidate in "$REPO/target/release/autoheal" "$(command -v autoheal || true)"; do
    if [[ -n $candidate && -x $candidate ]]; then binary="$candidate"; break; fi
  done
fi
[[ -n $binary && -x $binary ]] || die "no autoheal binary: build it (cargo build --release) or pass --binary PATH"

# toml_string VALUE: VALUE as a TOML basic string. Quotes, backslashes and control
# characters are escaped, so no argument can end the string early and add keys of its own
# (a crafted --role-arn must not smuggle in an endpoint_url).
toml_string() {
  local s="$1" out="" c code i
  for ((i = 0; i < ${#s}; i++)); do
    c="${s:i:1}"
    printf -v code '%d' "'$c"
    case "$c" in
      "\\") out+="\\\\" ;;
      '"') out+='\"' ;;
      *) if ((code < 32 || code == 127)); then printf -v c '\\u%04X' "$code"; fi; out+="$c" ;;
    esac
  done
  printf '"%s"' "$out"
}

# install_file SRC DEST MODE: copies when the content differs; says what it did.
install_file() {
  local src="$1" dest="$2" mode="$3"
  if [[ -f $dest ]] && cmp -s "$src" "$dest"; then
    say "unchanged $dest"
  else
    install -D -m "$mode" "$src" "$dest"
    say "installed $dest"
  fi
}

install_file "$binary" "$root/usr/local/bin/autoheal" 0755

config="$root/etc/autoheal/autoheal.toml"
if [[ -f $config && $force_config == false ]]; then
  say "kept the existing $config (--force-config rewrites it)"
else
  draft="$(mktemp)"
  trap 'rm -f "$draft"' EXIT
  {
    echo "# Written by deploy/install.sh; see docs/configuration.md for every key."
    if [[ $auth == oidc ]]; then
      printf '[oidc]\nissuer = %s\ntenant_slug = %s\n\n' "$(toml_string "$issuer")" "$(toml_string "$tenant_slug")"
    fi
    printf '[[integration]]\nname = %s\naccount_id = %s\nregion = %s\nauth = %s\n' \
      "$(toml_string "$name")" "$(toml_string "$account_id")" "$(toml_string "$region")" "$(toml_string "$auth")"
    if [[ -n $role_arn ]]; then printf 'role_arn = %s\n' "$(toml_string "$role_arn")"; fi
    if [[ -n $external_id ]]; then printf 'external_id = %s\n' "$(toml_string "$external_id")"; fi
  } > "$draft"
  "$binary" config check --config "$draft" >/dev/null \
    || { echo "install.sh: the configuration is not valid (see above)" >&2; exit 78; }
  install_file "$draft" "$config" 0640
fi

if [[ $method == systemd ]]; then
  install_file "$REPO/systemd/autoheal.service" "$root/etc/systemd/system/autoheal.service" 0644
  if [[ -z $root ]] && ! id autoheal >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin autoheal
    say "created the system user autoheal"
  fi
  if [[ -z $root ]]; then chgrp autoheal "$config"; fi
  if $start; then
    systemctl daemon-reload
    systemctl enable --now autoheal
    say "autoheal is enabled and started: systemctl status autoheal"
  fi
else
  install_file "$REPO/compose/docker-compose.yml" "$root/opt/autoheal/docker-compose.yml" 0644
  if $start; then
    docker image inspect autoheal:latest >/dev/null 2>&1 || "$REPO/scripts/build-daemon-image" --release
    docker compose -f "$root/opt/autoheal/docker-compose.yml" up -d
    say "autoheal is running: docker compose -f /opt/autoheal/docker-compose.yml ps"
  fi
fi

if $start && command -v docker >/dev/null && ! docker image inspect autoheal-sandbox:latest >/dev/null 2>&1; then
  "$REPO/scripts/build-sandbox-image" --release
fi
if [[ $auth == instance_role && -z $role_arn ]]; then
  say "note: without --role-arn, sandboxes receive the instance profile's own credentials (one shared session, not narrowed, naming no sandbox)."
  say "      Recommended: the two-role layout (docs/setup-instance-role.md; deploy/cloudformation/instance-role.yaml creates it),"
  say "      then run again with --role-arn arn:aws:iam::$account_id:role/AutohealReadOnlyRole --force-config"
fi
say "done"
