#!/usr/bin/env bash
# Installs autoheal on an EC2 host: the binary (the CLI on the host in both layouts), the
# sandbox image, a configuration written from the arguments, the autoheal user and group, and
# the service — the systemd unit (default) or the compose stack; then runs `autoheal check`
# and says what to do next. Runs from the unpacked release bundle (no cargo, no repository:
# the images are loaded with `docker load`) or from a checkout. Idempotent: run it again with
# the same arguments and nothing changes; an existing configuration is kept unless
# --force-config. Usable as EC2 user data (runs as root). Missing host packages (Docker,
# iptables, Compose) are installed with apt-get (Debian, Ubuntu) or dnf (Amazon Linux 2023).
#
#   install.sh --account-id 123456789012 [--region us-east-1] [--name production-aws]
#       [--auth instance_role|oidc] [--role-arn ARN] [--external-id ID]
#           (recommended with instance_role: --role-arn of a same-account read-only role, the
#            two-role layout; each sandbox then gets its own narrowed STS session)
#       [--issuer URL --tenant-slug SLUG]            # with --auth oidc
#       [--method systemd|compose] [--binary PATH] [--root DIR] [--no-start] [--no-check]
#       [--no-packages] [--force-config]
#
# --root DIR installs the files under DIR instead of / (for images and tests): no user is
# created and nothing is chowned, but missing host packages are still installed and the
# bundle's images loaded into this host's Docker. --no-start writes the files but does not
# enable or start anything; --no-check skips the final `autoheal check`; --no-packages never
# installs host packages (a missing one is an error).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

method=systemd
binary=""
root=""
start=true
check=true
packages=true
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
fail() { local code="$1"; shift; echo "install.sh: $*" >&2; exit "$code"; }
say() { echo "install.sh: $*"; }

while (($#)); do
  case "$1" in
    --method|--binary|--root|--name|--account-id|--region|--auth|--role-arn|--external-id|--issuer|--tenant-slug)
      [[ $# -ge 2 ]] || die "$1 needs a value" ;;
  esac
  case "$1" in
    --method) method="${2:-}"; shift ;;
    --binary) binary="${2:-}"; shift ;;
    --root) root="${2:-}"; shift ;;
    --no-start) start=false ;;
    --no-check) check=false ;;
    --no-packages) packages=false ;;
    --force-config) force_config=true ;;
    --name) name="${2:-}"; shift ;;
    --account-id) account_id="${2:-}"; shift ;;
    --region) region="${2:-}"; shift ;;
    --auth) auth="${2:-}"; shift ;;
    --role-arn) role_arn="${2:-}"; shift ;;
    --external-id) external_id="${2:-}"; shift ;;
    --issuer) issuer="${2:-}"; shift ;;
    --tenant-slug) tenant_slug="${2:-}"; shift ;;
    -h|--help) sed -n '2,23p' "$0"; exit 0 ;;
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

# Where the parts come from: the unpacked bundle (this script next to the binary, the unit,
# the compose file and the images) or a checkout (deploy/ next to systemd/ and compose/).
if [[ -f $HERE/autoheal.service && -f $HERE/docker-compose.yml ]]; then
  bundle=true
  REPO=""
  unit="$HERE/autoheal.service"
  compose_file="$HERE/docker-compose.yml"
  images="$HERE/autoheal-images.tar"
  [[ -n $binary ]] || binary="$HERE/autoheal"
  [[ -f $HERE/SHA256SUMS ]] || fail 65 "the bundle has no SHA256SUMS: download it again"
  (cd "$HERE" && sha256sum --quiet --strict -c SHA256SUMS) \
    || fail 65 "the bundle's files do not match SHA256SUMS: download it again"
else
  bundle=false
  REPO="$(dirname "$HERE")"
  unit="$REPO/systemd/autoheal.service"
  compose_file="$REPO/compose/docker-compose.yml"
  images=""
  if [[ -z $binary ]]; then
    for candidate in "$REPO/target/release/autoheal" "$(command -v autoheal || true)"; do
      if [[ -n $candidate && -x $candidate ]]; then binary="$candidate"; break; fi
    done
  fi
fi
[[ -n $binary && -x $binary ]] || die "no autoheal binary: use the release bundle, build it (cargo build --release) or pass --binary PATH"

# compose_command: the Compose on this host, `docker compose` (v2) or `docker-compose`
# (v1.29); nothing when neither is.
compose_command() {
  if docker compose version >/dev/null 2>&1; then echo "docker compose"
  elif command -v docker-compose >/dev/null 2>&1; then echo "docker-compose"
  fi
}

# Host packages: Docker always; iptables for the systemd layout (the daemon keeps its
# firewall rules with the host's iptables); Compose for the compose layout.
missing=()
command -v docker >/dev/null 2>&1 || missing+=(docker)
if [[ $method == systemd ]]; then command -v iptables >/dev/null 2>&1 || missing+=(iptables); fi
if [[ $method == compose && -z $(compose_command) ]]; then missing+=(compose); fi
if ((${#missing[@]})); then
  $packages || fail 69 "missing on this host: ${missing[*]} (run without --no-packages to install them)"
  if command -v apt-get >/dev/null 2>&1; then
    # Waits for the dpkg lock: at first boot, cloud-init or unattended-upgrades may hold it.
    apt_get() { DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"; }
    apt_get update -qq
    names=()
    for need in "${missing[@]}"; do
      case "$need" in
        docker) names+=(docker.io) ;;
        iptables) names+=(iptables) ;;
        compose) if apt-cache show docker-compose-v2 >/dev/null 2>&1; then names+=(docker-compose-v2); else names+=(docker-compose); fi ;;
      esac
    done
    say "installing ${names[*]} (apt-get)"
    apt_get install -y -qq "${names[@]}"
  elif command -v dnf >/dev/null 2>&1; then
    names=()
    for need in "${missing[@]}"; do
      case "$need" in
        docker) names+=(docker) ;;
        iptables) names+=(iptables-nft) ;;
        compose) fail 69 "Amazon Linux 2023 has no Compose package: install the Compose plugin (https://docs.docker.com/compose/install/linux/#install-the-plugin-manually) or use --method systemd" ;;
      esac
    done
    say "installing ${names[*]} (dnf)"
    dnf install -y -q "${names[@]}"
  else
    fail 69 "missing on this host: ${missing[*]}, and neither apt-get nor dnf is here to install them"
  fi
  if [[ " ${missing[*]} " == *" docker "* ]]; then systemctl enable --now docker; fi
  command -v docker >/dev/null 2>&1 || fail 69 "docker is still missing after the package install"
fi

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

# install_file SRC DEST MODE: copies when the content differs; says what it did. Notes in
# `changed` that something the running service uses was replaced.
changed=false
install_file() {
  local src="$1" dest="$2" mode="$3"
  if [[ -f $dest ]] && cmp -s "$src" "$dest"; then
    say "unchanged $dest"
  else
    install -D -m "$mode" "$src" "$dest"
    say "installed $dest"
    changed=true
  fi
}

# The user the systemd unit runs the daemon as, and the group whose members may read the
# configuration (operators: `autoheal check`, `autoheal config check`).
if [[ -z $root ]]; then
  if ! getent group autoheal >/dev/null; then
    groupadd --system autoheal
    say "created the system group autoheal"
  fi
  if ! id autoheal >/dev/null 2>&1; then
    useradd --system --gid autoheal --no-create-home --home-dir /var/lib/autoheal \
      --shell /usr/sbin/nologin autoheal
    say "created the system user autoheal"
  fi
fi

install_file "$binary" "$root/usr/local/bin/autoheal" 0755
cli="$root/usr/local/bin/autoheal"
if $bundle && [[ -d $HERE/doc ]]; then
  mkdir -p "$root/usr/share/doc/autoheal"
  cp -R "$HERE/doc/." "$root/usr/share/doc/autoheal/"
fi

config="$root/etc/autoheal/autoheal.toml"
if [[ -f $config && $force_config == false ]]; then
  say "kept the existing $config (--force-config rewrites it)"
else
  draft="$(mktemp)"
  trap 'rm -f "$draft"' EXIT
  {
    echo "# Written by install.sh; autoheal.example.toml and docs/configuration.md show every key."
    if [[ $auth == oidc ]]; then
      printf '[oidc]\nissuer = %s\ntenant_slug = %s\n\n' "$(toml_string "$issuer")" "$(toml_string "$tenant_slug")"
    fi
    printf '[[integration]]\nname = %s\naccount_id = %s\nregion = %s\nauth = %s\n' \
      "$(toml_string "$name")" "$(toml_string "$account_id")" "$(toml_string "$region")" "$(toml_string "$auth")"
    if [[ -n $role_arn ]]; then printf 'role_arn = %s\n' "$(toml_string "$role_arn")"; fi
    if [[ -n $external_id ]]; then printf 'external_id = %s\n' "$(toml_string "$external_id")"; fi
  } > "$draft"
  "$cli" config check --config "$draft" >/dev/null \
    || fail 78 "the configuration is not valid (see above)"
  install_file "$draft" "$config" 0640
fi
if $bundle && [[ -f $HERE/autoheal.example.toml ]]; then
  install_file "$HERE/autoheal.example.toml" "$root/etc/autoheal/autoheal.example.toml" 0644
fi
# The state directory (API token, OIDC keys, audit log) belongs to the daemon's user, all of
# it: root in the compose layout, autoheal under systemd — so a key `sudo autoheal oidc
# keygen` made before this run, or a token from the other layout, is one the daemon reads.
state="$root/var/lib/autoheal"
if [[ ! -d $state ]]; then say "created $state"; fi
install -d -m 0700 "$state"
if [[ -z $root ]]; then
  chgrp autoheal "$config"
  if [[ $method == systemd ]]; then owner=autoheal:autoheal; else owner=root:root; fi
  chown -R "$owner" "$state"
fi

# The images: from the bundle with docker load (no registry, no cargo); from a checkout,
# built with the image scripts when missing.
if $bundle && [[ -f $images ]]; then
  docker info >/dev/null 2>&1 || fail 69 "cannot reach the Docker engine (systemctl start docker)"
  docker load --quiet -i "$images" | while read -r line; do say "$line"; done
fi

if [[ $method == systemd ]]; then
  install_file "$unit" "$root/etc/systemd/system/autoheal.service" 0644
  if $start; then
    systemctl daemon-reload
    # A new binary, unit or config takes effect now, not at the next reboot.
    if $changed && systemctl is-active --quiet autoheal; then systemctl restart autoheal; fi
    systemctl enable --now autoheal
    say "autoheal is enabled and started: systemctl status autoheal"
  fi
else
  install_file "$compose_file" "$root/opt/autoheal/docker-compose.yml" 0644
  if $start; then
    if ! docker image inspect autoheal:latest >/dev/null 2>&1; then
      $bundle && fail 69 "the daemon image autoheal:latest is missing although the bundle was loaded"
      "$REPO/scripts/build-daemon-image" --release
    fi
    # shellcheck disable=SC2046 # `docker compose` is two words
    $(compose_command) -f "$root/opt/autoheal/docker-compose.yml" up -d
    say "autoheal is running: docker compose -f /opt/autoheal/docker-compose.yml ps"
  fi
  # The daemon's image carries the iptables of the machine that built it; its rules must be
  # of the host's flavour (nf_tables or legacy).
  if command -v iptables >/dev/null 2>&1 && docker image inspect autoheal:latest >/dev/null 2>&1; then
    host_flavour="$(iptables --version | grep -o 'nf_tables\|legacy' || true)"
    image_flavour="$(docker run --rm --network none --entrypoint /usr/sbin/iptables autoheal:latest --version 2>/dev/null | grep -o 'nf_tables\|legacy' || true)"
    if [[ -n $host_flavour && -n $image_flavour && $host_flavour != "$image_flavour" ]]; then
      say "warning: this host's iptables is $host_flavour, the daemon image's is $image_flavour: its firewall rules would not take effect. Use --method systemd."
    fi
  fi
fi

if $start && ! $bundle && command -v docker >/dev/null && ! docker image inspect autoheal-sandbox:latest >/dev/null 2>&1; then
  "$REPO/scripts/build-sandbox-image" --release
fi
if [[ $auth == instance_role && -z $role_arn ]]; then
  say "note: without --role-arn, sandboxes receive the instance profile's own credentials (one shared session, not narrowed, naming no sandbox)."
  say "      Recommended: the two-role layout (docs/setup-instance-role.md; deploy/cloudformation/instance-role.yaml creates it),"
  say "      then run again with --role-arn arn:aws:iam::$account_id:role/AutohealReadOnlyRole --force-config"
fi

if [[ $method == systemd ]]; then
  reload="sudo systemctl reload autoheal"
else
  reload="sudo $(compose_command) -f /opt/autoheal/docker-compose.yml kill -s HUP autoheal"
fi
checked=0
if $check; then
  say "Test Connection: autoheal check --config $config"
  "$cli" check --config "$config" || checked=$?
fi

cat <<EOF
install.sh: done. Next:
  - operators: sudo usermod -aG autoheal <user> (then log in again) lets <user> run
    'autoheal check' and 'autoheal config check' without sudo
  - a sandbox: sudo autoheal sandbox run --integration $name -- autoheal tool whoami
  - the agent: an MCP session per investigation (/usr/share/doc/autoheal/docs/agents.md)
  - more integrations, limits, egress: /etc/autoheal/autoheal.toml (every key:
    /etc/autoheal/autoheal.example.toml), then: $reload
EOF
if ((checked != 0)); then
  fail "$checked" "installed, but 'autoheal check' failed (exit $checked): fix what it names (docs/troubleshooting.md), then run 'sudo autoheal check' again"
fi
