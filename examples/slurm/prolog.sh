#!/usr/bin/env bash
# Slurm node prolog: refuse to start a job on this node unless the lightfence gate allows every
# GPU the job may use. Read-only: it asks, decides, logs and exits; it never touches the GPUs.
#
# Install on each GPU node (slurm.conf):   Prolog=/etc/slurm/prolog.d/lightfence.sh
# Slurm runs it as root before the job. A non-zero exit makes Slurm requeue the job and drain
# the node with reason "Prolog error": the node stays out of service until an admin looks,
# which is what should happen to a node whose GPUs are not verified.
#
# Configuration (environment, or the file $LIGHTFENCE_GATE_CONF, default /etc/lightfence/gate.env):
#   LIGHTFENCE_VERIFIER_URL   verifier base URL (required unless LIGHTFENCE_TOKEN_DIR is set)
#   LIGHTFENCE_TOKEN_DIR      read tokens from DIR/<device id>.token instead of the verifier
#   LIGHTFENCE_VERIFIER_KEY   verifier public key file, hex or GET /verifier/key's JSON
#                                                            (default /etc/lightfence/verifier.pub)
#   LIGHTFENCE_DEVICE_MAP     lines "GPU_INDEX DEVICE_ID"    (default /etc/lightfence/devices)
#   LIGHTFENCE_GATE_MODE      fail-closed | fail-open        (default fail-closed)
#   LIGHTFENCE_GATE_GRACE     fail-open grace, seconds       (default 0)
#   LIGHTFENCE_GATE_POLICY    required policy (optional), e.g. outside:CN,HK,MO or the whole
#                             'outside:CN,HK,MO (bound: vacuum, liars: 1)' (docs/gate.md)
#   LIGHTFENCE_GATE_STATE     decision log and token cache   (default /var/lib/lightfence/gate)
#   LIGHTFENCE_BIN            the lightfence command         (default lightfence)
#
# Which GPUs: the job's (SLURM_JOB_GPUS, e.g. "0,2") when Slurm allocated GPUs; otherwise every
# GPU in the map, because without device cgroups (ConstrainDevices=yes) any job can reach them.
set -u

conf=${LIGHTFENCE_GATE_CONF:-/etc/lightfence/gate.env}
# shellcheck disable=SC1090
[ -r "$conf" ] && . "$conf"

key=${LIGHTFENCE_VERIFIER_KEY:-/etc/lightfence/verifier.pub}
map=${LIGHTFENCE_DEVICE_MAP:-/etc/lightfence/devices}
mode=${LIGHTFENCE_GATE_MODE:-fail-closed}
grace=${LIGHTFENCE_GATE_GRACE:-0}
bin=${LIGHTFENCE_BIN:-lightfence}

refuse() {
    echo "lightfence prolog: job ${SLURM_JOB_ID:-?} refused on $(hostname): $*" >&2
    logger -t lightfence-prolog "job ${SLURM_JOB_ID:-?} refused: $*" 2>/dev/null || true
    exit 1
}

[ -r "$map" ] || refuse "device map $map not readable"

if [ -n "${SLURM_JOB_GPUS:-}" ]; then
    gpus=$(echo "$SLURM_JOB_GPUS" | tr ',' ' ')
else
    gpus=$(awk '!/^[[:space:]]*(#|$)/ {print $1}' "$map")
fi
[ -n "$gpus" ] || exit 0  # no GPU on this node and none in the job: nothing to gate

devices=()
for gpu in $gpus; do
    device=$(awk -v g="$gpu" '!/^[[:space:]]*#/ && $1 == g {print $2; exit}' "$map")
    [ -n "$device" ] || refuse "GPU $gpu has no device id in $map"
    devices+=("$device")
done

gate_args=(--verifier-key "$key" --mode "$mode")
[ "$mode" = fail-open ] && gate_args+=(--grace "$grace")
[ -n "${LIGHTFENCE_GATE_POLICY:-}" ] && gate_args+=(--policy "$LIGHTFENCE_GATE_POLICY")
[ -n "${LIGHTFENCE_GATE_STATE:-}" ] && gate_args+=(--state-dir "$LIGHTFENCE_GATE_STATE")

# Exit 0 allowed, 1 denied, 2 unknown (the gate could not decide): only 0 lets the job start.
if [ -n "${LIGHTFENCE_TOKEN_DIR:-}" ]; then
    for device in "${devices[@]}"; do
        answer=$("$bin" gate check --device "$device" \
            --token "$LIGHTFENCE_TOKEN_DIR/$device.token" "${gate_args[@]}")
        status=$?
        [ "$status" -eq 0 ] || refuse "device $device: exit $status $answer"
    done
else
    [ -n "${LIGHTFENCE_VERIFIER_URL:-}" ] || refuse "LIGHTFENCE_VERIFIER_URL is not set"
    device_args=()
    for device in "${devices[@]}"; do device_args+=(--device "$device"); done
    # One process for all the job's GPUs: one JSON line per device.
    answer=$("$bin" gate check "${device_args[@]}" --verifier "$LIGHTFENCE_VERIFIER_URL" \
        "${gate_args[@]}")
    status=$?
    [ "$status" -eq 0 ] || refuse "GPUs $gpus: exit $status $(echo "$answer" | grep -v '"answer": "allowed"')"
fi
exit 0
