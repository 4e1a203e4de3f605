"""``leviathan stop`` deletes worker pods through ``KubernetesHook``, against a Kubernetes API on 127.0.0.1.

The API is a small HTTP server answering the two calls the stop makes (list the namespace's pods by label,
delete one); the real kubernetes client and the provider's hook reach it through the ``kubernetes_default``
connection's kube config, as they would reach a cluster.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from leviathan_lib.control.emergency import WORKER_POD_LABEL, delete_worker_pods


def _pod(name: str, namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": namespace,
                                                             "labels": {"app": "leviathan-worker"}}}


class FakeKubernetes:
    def __init__(self, pods: dict[str, list[str]]):
        self.pods, self.calls = pods, []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):  # noqa: N802
                url = urlsplit(self.path)
                fake.calls.append(("GET", url.path, parse_qs(url.query).get("labelSelector"),
                                   self.headers.get("Authorization")))
                namespace = url.path.split("/")[4]
                items = [_pod(n, namespace) for n in fake.pods.get(namespace, [])]
                self._answer(200, {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": items})

            def do_DELETE(self):  # noqa: N802
                fake.calls.append(("DELETE", self.path, None, self.headers.get("Authorization")))
                _, _, _, _, namespace, _, name = self.path.split("?")[0].split("/")
                fake.pods[namespace].remove(name)
                self._answer(200, _pod(name, namespace))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()


def test_the_stop_deletes_only_the_worker_pods_of_the_namespace_through_the_hooks_connection(tmp_path, monkeypatch):
    fake = FakeKubernetes({"leviathan": ["leviathan-run-worker-a", "leviathan-run-worker-b"], "other": ["x"]})
    try:
        kube_config = tmp_path / "kubeconfig"
        kube_config.write_text(json.dumps({
            "apiVersion": "v1", "kind": "Config", "current-context": "fake",
            "clusters": [{"name": "fake", "cluster": {"server": fake.url}}],
            "users": [{"name": "stop", "user": {"token": "stop-token"}}],
            "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "stop"}}]}))
        monkeypatch.setenv("AIRFLOW_CONN_KUBERNETES_DEFAULT", json.dumps(
            {"conn_type": "kubernetes", "extra": {"kube_config_path": str(kube_config)}}))
        assert delete_worker_pods("leviathan") == ["leviathan-run-worker-a", "leviathan-run-worker-b"]
    finally:
        fake.server.shutdown()
    assert fake.pods == {"leviathan": [], "other": ["x"]}
    listing = fake.calls[0]
    assert listing[:3] == ("GET", "/api/v1/namespaces/leviathan/pods", [WORKER_POD_LABEL])
    assert {c[3] for c in fake.calls} == {"Bearer stop-token"}  # the connection's credentials, every call
    assert [c[1].split("?")[0] for c in fake.calls[1:]] == ["/api/v1/namespaces/leviathan/pods/leviathan-run-worker-a",
                                                            "/api/v1/namespaces/leviathan/pods/leviathan-run-worker-b"]
