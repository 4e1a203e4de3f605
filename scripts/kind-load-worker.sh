#!/usr/bin/env bash
# Build the worker image and load it into a kind cluster as leviathan-worker:local.
#   scripts/kind-load-worker.sh            # cluster "leviathan" (KIND_CLUSTER_NAME overrides)
# The image is never pushed anywhere: targets use imagePullPolicy IfNotPresent for :local images.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${LEVIATHAN_WORKER_IMAGE:-leviathan-worker:local}"
CLUSTER="${KIND_CLUSTER_NAME:-leviathan}"

for tool in docker kind; do
  command -v "$tool" >/dev/null || { echo "error: $tool is not installed" >&2; exit 2; }
done

docker build --file k8s/worker/Dockerfile --tag "$IMAGE" .
# Smoke test under the pod's constraints: non-root, read-only root, only /tmp writable.
docker run --rm --read-only --tmpfs /tmp --user 10001:10001 --network none "$IMAGE" \
  python3 -c "import leviathan_lib.worker.llm as m; m.load_prompt('edit-v1'); print('worker image ok')"
kind load docker-image "$IMAGE" --name "$CLUSTER"
echo "loaded $IMAGE into kind cluster $CLUSTER"
